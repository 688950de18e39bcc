"""A small synthetic DriveLog (straight two-lane road, one lead car): fixtures for tests and examples.

Not a substitute for town logs; it exists so log, sim and metric code can be exercised without the town.
"""

from __future__ import annotations

import numpy as np

from jwmsim.geometry import DT, default_rig, se2_to_se3
from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack, Frame, LogMeta
from jwmsim.map import Lane, RoadMap, Route


def straight_road_map(length: float = 200.0, lane_width: float = 3.5, speed_limit: float = 13.4) -> RoadMap:
    """Two opposite lanes along x from 0 to length [m]; the +x lane has id 0, the -x lane id 1."""
    fwd = Lane(0, np.array([[0.0, 0.0], [length, 0.0]]), width=lane_width, speed_limit=speed_limit)
    back = Lane(1, np.array([[length, lane_width], [0.0, lane_width]]), width=lane_width, speed_limit=speed_limit)
    road = np.array([[0.0, -lane_width / 2], [length, -lane_width / 2], [length, 1.5 * lane_width],
                     [0.0, 1.5 * lane_width]])
    return RoadMap(lanes=[fwd, back], drivable_area=[road])


def synthetic_log(num_frames: int = 20, speed: float = 8.0, with_frames: bool = True, height: int = 24,
                  width: int = 40, seed: int = 0) -> tuple[DriveLog, list[Frame] | None]:
    """A log of an ego driving at `speed` m/s along lane 0 behind one lead vehicle 20 m ahead.

    Returns the log (frames None) and, with with_frames, a list of random frames for its rig.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) * DT
    x = 10.0 + speed * t
    pose = np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1)
    ego = EgoTrack(ego_to_world=se2_to_se3(pose), velocity=np.tile([speed, 0.0], (num_frames, 1)),
                        acceleration=np.zeros((num_frames, 2)), yaw_rate=np.zeros(num_frames))
    center = np.stack([x + 20.0, np.zeros_like(x), np.full_like(x, 0.8)], -1)[:, None, :]
    agents = AgentTracks(ids=np.array([7], np.int64), types=np.array([0], np.int8), center=center,
                         size=np.array([[4.5, 1.9, 1.6]]), yaw=np.zeros((num_frames, 1)),
                         velocity=np.tile([speed, 0.0], (num_frames, 1, 1)), valid=np.ones((num_frames, 1), bool))
    road_map = straight_road_map()
    rig = default_rig(width=width, height=height)
    log = DriveLog(meta=LogMeta(log_id=f"synthetic-{seed}", source="synthetic"), timestamps=t, ego=ego,
                   agents=agents, road_map=road_map, route=Route.from_lanes(road_map, [0]), rig=rig,
                   eval_rigs={"shift_+1m": default_rig(width=width, height=height, lateral_shift=1.0)})
    frames = None
    if with_frames:
        frames = [Frame(images=rng.integers(0, 256, (len(rig), height, width, 3), dtype=np.uint8),
                        depth=rng.uniform(1, 80, (len(rig), height, width)).astype(np.float32),
                        semantic=rng.integers(0, 14, (len(rig), height, width), dtype=np.uint8),
                        instance=np.zeros((len(rig), height, width), np.int32)) for _ in range(num_frames)]
    return log, frames
