"""Gymnasium envs. ``import jwmsim`` (or ``import jwmsim.env``) registers ``jwmsim/Drive-v0`` and
``jwmsim/JointWorld-v0``; registering
imports nothing heavy (no numba, torch or scenario data until an env is made).

* ``gymnasium.make("jwmsim/Drive-v0", scenarios=..., action=..., traffic=...)``:
  :class:`jwmsim.env.drive.DriveEnv` (state observations), the B = 1 view of the batched core
  :class:`jwmsim.env.core.BatchedDrive`.
* ``gymnasium.make("jwmsim/JointWorld-v0", scenarios=..., sensors="joint")``: camera images from the joint
  world model (:class:`jwmsim.env.joint.JointWorldEnv`), same core; vectorise it with
  ``gymnasium.make_vec(..., vectorization_mode="async")``.
* ``gymnasium.make_vec("jwmsim/Drive-v0", num_envs=B, ...)``: :func:`make_vector_env`, B scenarios in one
  vectorised step (:class:`jwmsim.env.vector.DriveVectorEnv`, autoreset NEXT_STEP); with ``num_workers=W``
  the batch is split over W processes (:class:`jwmsim.env.shards.ShardedDriveVectorEnv`, same results row
  for row).

Module graph (no circle): observation, metrics_adapter <- core <- drive, vector <- shards; this package
module imports none of them eagerly.
"""

from __future__ import annotations

from typing import Any

ENV_ID = "jwmsim/Drive-v0"
JOINT_ENV_ID = "jwmsim/JointWorld-v0"


def register_envs() -> None:
    """Register ``jwmsim/Drive-v0`` and ``jwmsim/JointWorld-v0`` with Gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    if ENV_ID not in registry:
        register(id=ENV_ID, entry_point="jwmsim.env.drive:DriveEnv",
                 vector_entry_point="jwmsim.env:make_vector_env", disable_env_checker=False)
    if JOINT_ENV_ID not in registry:
        # Camera envs vectorise as gymnasium's AsyncVectorEnv (one process per env), not the batched core.
        register(id=JOINT_ENV_ID, entry_point="jwmsim.env.joint:JointWorldEnv", disable_env_checker=False)


def make_vector_env(num_envs: int = 1, num_workers: int = 1, **kwargs: Any):
    """The registered ``vector_entry_point``: :class:`jwmsim.env.vector.DriveVectorEnv` in this process
    (num_workers = 1), or the batch split over num_workers processes
    (:class:`jwmsim.env.shards.ShardedDriveVectorEnv`; its ``step_timeout`` [s] is accepted here too)."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    if num_workers == 1:
        if "step_timeout" in kwargs:
            kwargs.pop("step_timeout")  # meaningful only with worker processes
        from jwmsim.env.vector import DriveVectorEnv

        return DriveVectorEnv(num_envs=num_envs, **kwargs)
    from jwmsim.env.shards import ShardedDriveVectorEnv

    return ShardedDriveVectorEnv(num_envs=num_envs, num_workers=num_workers, **kwargs)


register_envs()

__all__ = ["ENV_ID", "JOINT_ENV_ID", "make_vector_env", "register_envs"]
