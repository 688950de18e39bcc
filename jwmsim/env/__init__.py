"""Gymnasium envs. ``import jwmsim.env`` registers ``jwmsim/Drive-v0`` (``import jwmsim`` stays light).

* ``gymnasium.make("jwmsim/Drive-v0", scenarios=..., action=..., traffic=...)``:
  :class:`jwmsim.env.drive.DriveEnv` (state observations).
* ``gymnasium.make_vec("jwmsim/Drive-v0", num_envs=B, ...)``: :class:`jwmsim.env.vector.DriveVectorEnv`,
  B scenarios in one vectorised step (autoreset NEXT_STEP); with ``num_workers=W`` the batch is split
  over W processes (:class:`jwmsim.env.shards.ShardedDriveVectorEnv`, same results row for row).
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "jwmsim/Drive-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="jwmsim.env.drive:DriveEnv",
        vector_entry_point="jwmsim.env.vector:make_vector_env",
        disable_env_checker=False,
    )

__all__ = ["ENV_ID"]
