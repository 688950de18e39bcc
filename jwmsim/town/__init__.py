"""The embedded default world: procedural town, its traffic, the oracle renderer and log generation.

Public API (plain functions; the CLI wires ``jwmsim town make-log`` and ``jwmsim town dataset`` to them):

- :func:`generate_town` (``layout``): seed -> :class:`Town` (plain data + :class:`jwmsim.map.RoadMap`).
- :func:`simulate` (``traffic``): IDM traffic, junction reservations, pedestrians; checked every frame.
- :func:`static_mesh`, :func:`renderer` (``scene``): the town's meshes and its oracle renderer.
- :func:`make_log` (``make_log``): one rendered DriveLog; :func:`make_dataset` (``dataset``): many, with
  the fixed seed split :data:`TRAIN_SEEDS` / :data:`VAL_SEEDS` / :data:`TEST_SEEDS`.

``mesh`` and ``oracle`` (the renderer) are imported from their modules directly.
"""

from jwmsim.town.dataset import SPLITS, TEST_SEEDS, TRAIN_SEEDS, VAL_SEEDS, make_dataset, split_of
from jwmsim.town.layout import Town, generate_town
from jwmsim.town.make_log import build_log, make_log
from jwmsim.town.scene import renderer, static_mesh
from jwmsim.town.traffic import TrafficError, TrafficResult, TrafficSim, simulate

__all__ = ["Town", "generate_town", "simulate", "TrafficSim", "TrafficResult", "TrafficError", "static_mesh", "renderer",
           "make_log", "build_log", "make_dataset", "split_of", "SPLITS", "TRAIN_SEEDS", "VAL_SEEDS", "TEST_SEEDS"]
