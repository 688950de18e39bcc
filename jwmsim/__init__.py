"""jwmsim: closed-loop driving simulator built around a joint world model.

Data flow (each stage a function of plain data; nothing downstream imported upstream):
log -> world (worldrec) -> sim -> render (splat, worldgen) -> env.
Conventions (frames, units, image layout): :mod:`jwmsim.geometry`.
"""

__version__ = "0.1.0"
