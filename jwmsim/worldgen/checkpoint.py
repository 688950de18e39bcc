"""Moved to :mod:`jwmsim.checkpoint` (shared by WorldGen and the camera policy); kept for old imports."""

from jwmsim.checkpoint import CheckpointError, export_weights, load_checkpoint, read_meta, save_checkpoint  # noqa: F401

__all__ = ["save_checkpoint", "load_checkpoint", "read_meta", "export_weights", "CheckpointError"]
