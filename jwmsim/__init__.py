"""jwmsim: closed-loop driving simulator built around a joint world model.

Data flow (each stage a function of plain data; nothing downstream imported upstream):
log -> world (worldrec) -> sim -> render (splat, worldgen) -> env.
Conventions (frames, units, image layout): :mod:`jwmsim.geometry`.

``import jwmsim`` registers the Gymnasium env ``jwmsim/Drive-v0`` (:mod:`jwmsim.env`) and stays light:
torch, numba and the simulator load only when something uses them.
"""

__version__ = "0.1.0"

import jwmsim.env  # noqa: E402,F401  (registers jwmsim/Drive-v0; imports only gymnasium's registry)
