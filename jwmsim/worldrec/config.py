"""WorldRec's settings, kept free of heavy imports so the CLI can register them as structured configs
(:mod:`jwmsim.conf.structured`): `jwmsim train worldrec KEY=VALUE model.KEY=VALUE`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class WorldRecConfig:
    """Architecture. Distances [m]; feature sizes in channels."""

    channels: int = 64            # C: encoder feature and query width
    depth_bins: int = 48          # D: log-spaced depth bins between depth_min and depth_max (+1 sky bin)
    depth_min: float = 1.0
    depth_max: float = 80.0
    sky_range: float = 120.0      # sky queries sit on a shell at this range around the lifting camera
    voxel_min: float = 0.4        # smallest query voxel [m]; grows with distance (one feature pixel's footprint)
    voxel_max: float = 6.4
    sky_voxel_deg: float = 4.0    # angular size of a sky query [deg]
    key_points: int = 4           # P (one fixed at the query centre)
    gaussians_per_query: int = 4  # K
    layers: int = 2               # refinement layers
    visibility: str = "learned"   # "learned" | "uniform" (ablation: plain mean over the views that see it)
    queries: str = "sparse"       # "sparse" (voxel-thinned 3D queries) | "pixel" (baseline: one query per
                                  # feature pixel of every view, no thinning: a pixel-aligned splatter)

    def __post_init__(self) -> None:
        if self.visibility not in ("learned", "uniform"):
            raise ValueError(f"visibility must be 'learned' or 'uniform', got {self.visibility!r}")
        if self.queries not in ("sparse", "pixel"):
            raise ValueError(f"queries must be 'sparse' or 'pixel', got {self.queries!r}")
        if self.key_points < 1 or self.gaussians_per_query < 1 or self.layers < 0 or self.channels % 8:
            raise ValueError("key_points and gaussians_per_query must be >= 1, layers >= 0, channels a multiple of 8")
    agent_margin: float = 0.3     # points within this of an agent box belong to the agent [m]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorldRecConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class TrainConfig:
    data: str = "data/town"          # a `jwmsim town dataset` folder; only its train split is read
    out: str = "runs/worldrec"
    max_steps: int = 20000
    max_minutes: float = 170.0
    stop_step: int = 0               # end this call at this step (0: max_steps); the lr schedule still follows
                                     # max_steps, so a run stopped here matches another run's first steps
    lr: float = 1e-3
    lr_final: float = 1e-4
    weight_decay: float = 1e-4
    keyframes: int = 4
    stride: int = 3
    held_out: int = 2
    shifted: int = 1
    max_queries: int = 4000          # per training window (random subset above it)
    ssim_weight: float = 0.2
    depth_weight: float = 0.1
    opacity_weight: float = 0.002
    checkpoint_every_s: float = 240.0
    log_every: int = 25
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    resume: bool = False             # continue out/checkpoint.safetensors
    init: str | None = None          # start from these weights (e.g. the committed default) instead of random
    progress: bool = True
    model: WorldRecConfig = field(default_factory=WorldRecConfig)
