"""WorldRec: feed-forward reconstruction of a 3D Gaussian world from a window of multi-camera frames.

Data flow of one forward pass (shapes: V views = frames x cameras, Q queries, P key points,
K Gaussians per query, C feature channels; frames and units follow :mod:`jwmsim.geometry`)::

    images [V, 3, H, W] ──ImageEncoder──► features [V, C, H/4, W/4], depth logits [V, D+1, H/4, W/4]
    predicted depth ──QueryLifter──► sparse 3D queries [Q]: position (in the query's own frame: world for
        the static scene, the agent's box frame for agents), size [m], feature [Q, C], agent index
    for each RefineLayer:
        KeyPoints: P points around each query ──project into every view (box pose at the view's time
        for agent queries)──► VisibilityAggregator: bilinear samples [Q, V, P, C] weighted by a learned
        visibility (in-frustum, depth agreement with the view's predicted depth, camera distance);
        samples behind a camera or outside the image weigh 0; a query no view sees is not updated
        ──► feed-forward ──► bounded position refinement
    GaussianHead: each query ──► K Gaussians (offsets bounded by the query size, scales, rotation,
        opacity, colour) in the query's frame

Not pixel-aligned: the Gaussian count is set by the voxel thinning of the lifted points, not by the
number of pixels. The log's depth supervises the depth head in training (as LiDAR would); it is never
an input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from jwmsim import geometry
from jwmsim.splat.scene import GaussianScene, rgb_to_sh0
from jwmsim.worldrec.config import WorldRecConfig


# ----------------------------------------------------------------------------- encoder


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.norm = nn.GroupNorm(8, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.norm(self.conv1(x))))


class ImageEncoder(nn.Module):
    """Shared by every camera and frame. images [V, 3, H, W] in [0, 1] -> (features [V, C, H/4, W/4],
    depth logits [V, D + 1, H/4, W/4]; the last channel is the sky).

    Multi-scale: a 1/8 branch (wider context) is upsampled and added to the 1/4 branch (FPN-style).
    """

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        c = cfg.channels
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(32, c, 3, stride=2, padding=1), nn.GELU(), _ResBlock(c))
        self.down = nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU(), _ResBlock(c), _ResBlock(c))
        self.lateral = nn.Conv2d(c, c, 1)
        self.fuse = _ResBlock(c)
        self.depth_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, cfg.depth_bins + 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x4 = self.stem(images * 2.0 - 1.0)
        x8 = self.down(x4)
        up = F.interpolate(x8, size=x4.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.fuse(self.lateral(x4) + up)
        return feat, self.depth_head(feat)


def depth_bin_centres(cfg: WorldRecConfig, device=None) -> torch.Tensor:
    """[D] m, log-spaced."""
    return torch.exp(torch.linspace(math.log(cfg.depth_min), math.log(cfg.depth_max), cfg.depth_bins, device=device))


def depth_from_logits(logits: torch.Tensor, cfg: WorldRecConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [V, D+1, h, w] -> (expected camera z [V, h, w] m over the non-sky bins, sky probability [V, h, w])."""
    p = logits.softmax(1)
    centres = depth_bin_centres(cfg, logits.device)
    ground = p[:, :-1]
    z = (ground * centres[None, :, None, None]).sum(1) / ground.sum(1).clamp_min(1e-6)
    return z, p[:, -1]


def depth_targets(depth: torch.Tensor, cfg: WorldRecConfig, size: tuple[int, int]) -> torch.Tensor:
    """Log depth [V, H, W] m (inf = sky) -> bin index [V, h, w] (D = sky) at the feature resolution.

    Nearest-neighbour pooling keeps a bin that exists in the image (averaging would invent depths at edges).
    """
    d = F.interpolate(depth[:, None], size=size, mode="nearest")[:, 0]
    sky = ~torch.isfinite(d) | (d > cfg.depth_max * 1.5)
    lo, hi = math.log(cfg.depth_min), math.log(cfg.depth_max)
    x = (torch.log(d.clamp(cfg.depth_min, cfg.depth_max)) - lo) / (hi - lo) * (cfg.depth_bins - 1)
    idx = x.round().long().clamp(0, cfg.depth_bins - 1)
    return torch.where(sky, torch.full_like(idx, cfg.depth_bins), idx)


# ----------------------------------------------------------------------------- views


@dataclass
class ViewBatch:
    """The input views of one window. V = F frames x C cameras.

    images [V, 3, H, W] float [0, 1]; Ks [V, 3, 3] px; cam_to_world [V, 4, 4]; frame [V] long (index into
    the window's time axis); agent_to_world [T, A, 4, 4]: each agent's box pose (centre, yaw) at each time
    of the window's time axis; agent_valid [T, A] bool; agent_size [A, 3] m (length, width, height);
    agent_ids [A] long (track ids; the instance id is track id + 1, as in the town's instance images).
    """

    images: torch.Tensor
    Ks: torch.Tensor
    cam_to_world: torch.Tensor
    frame: torch.Tensor
    agent_to_world: torch.Tensor
    agent_valid: torch.Tensor
    agent_size: torch.Tensor
    agent_ids: torch.Tensor

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    def to(self, device) -> "ViewBatch":
        return ViewBatch(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


@dataclass
class Queries:
    """Sparse 3D scene queries.

    pos [Q, 3] m in the query's frame (world, or the box frame of agent ``agent[q]``); size [Q] m (voxel
    edge: bounds key points and Gaussian offsets); feat [Q, C]; agent [Q] long (-1 static, else index into
    the batch's agents); sky [Q] bool; seen [Q] float: how much visibility mass has observed the query.
    """

    pos: torch.Tensor
    size: torch.Tensor
    feat: torch.Tensor
    agent: torch.Tensor
    sky: torch.Tensor
    seen: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.seen is None:
            self.seen = torch.zeros_like(self.size)

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def subset(self, idx) -> "Queries":
        return Queries(self.pos[idx], self.size[idx], self.feat[idx], self.agent[idx], self.sky[idx], self.seen[idx])

    @staticmethod
    def cat(qs: list["Queries"]) -> "Queries":
        return Queries(*(torch.cat([getattr(q, k) for q in qs]) for k in ("pos", "size", "feat", "agent", "sky", "seen")))


def query_to_world(q_agent: torch.Tensor, batch: ViewBatch) -> torch.Tensor:
    """[Q, V, 4, 4] pose of each query's frame in the world at each view's time (identity for static
    queries; the agent's box pose for agent queries), and the validity [Q, V] of that pose."""
    V = batch.num_views
    Q = q_agent.shape[0]
    eye = torch.eye(4, dtype=batch.cam_to_world.dtype, device=q_agent.device)
    out = eye.expand(Q, V, 4, 4).clone()
    valid = torch.ones(Q, V, dtype=torch.bool, device=q_agent.device)
    dyn = q_agent >= 0
    if dyn.any() and batch.agent_to_world.shape[1] > 0:
        a = q_agent[dyn]
        poses = batch.agent_to_world[batch.frame][:, a]  # [V, Qd, 4, 4]
        out[dyn] = poses.transpose(0, 1)
        valid[dyn] = batch.agent_valid[batch.frame][:, a].T
    return out, valid


def project(points_q: torch.Tensor, q_to_world: torch.Tensor, batch: ViewBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [Q, P, 3] in query frames -> pixels [Q, V, P, 2] and camera z [Q, V, P] m in every view.

    Same convention as :func:`jwmsim.geometry.project_points` (pixel centres at integers).
    """
    world_to_cam = torch.linalg.inv(batch.cam_to_world)  # [V, 4, 4]
    m = world_to_cam[None] @ q_to_world  # [Q, V, 4, 4]: query frame -> camera
    pc = torch.einsum("qvij,qpj->qvpi", m[..., :3, :3], points_q) + m[..., None, :3, 3]
    z = pc[..., 2]
    zs = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    K = batch.Ks[None, :, None]  # [1, V, 1, 3, 3]
    u = K[..., 0, 0] * pc[..., 0] / zs + K[..., 0, 2]
    v = K[..., 1, 1] * pc[..., 1] / zs + K[..., 1, 2]
    return torch.stack([u, v], -1), z


# ----------------------------------------------------------------------------- queries


_KEY_BITS = (18, 5, 13, 13, 13)  # agent slot (track * 2 + sky), voxel level, cell x, y, z (62 bits)


def pack_keys(keys: torch.Tensor) -> torch.Tensor:
    """Voxel keys [N, 5] long -> one int64 per key, monotonic in the keys' lexicographic order. Fields are
    offset by half their range: ±4096 cells (±1.6 km from the world's origin at 0.4 m voxels) and track ids
    below 65k fit; larger values raise."""
    off = torch.tensor([1 << (b - 1) for b in _KEY_BITS], device=keys.device)
    k = keys + off
    if len(k) and ((k < 0).any() or (k >= torch.tensor([1 << b for b in _KEY_BITS], device=k.device)).any()):
        raise ValueError("voxel key out of range: the scene spans more than ±1.6 km around the world's origin or "
                         "a track id exceeds 65k; reconstruct shorter stretches of the drive")
    out = torch.zeros(len(k), dtype=torch.long, device=keys.device)
    for i, b in enumerate(_KEY_BITS):
        out = (out << b) | k[:, i]
    return out


class QueryLifter(nn.Module):
    """Sparse 3D queries from the predicted depth: every feature pixel of every view is lifted to its
    expected depth (sky pixels to a far shell), assigned to an agent when it falls in an agent's box at
    that view's time, and thinned to one query per voxel (voxel size grows with the pixel footprint, so
    far space is not over-sampled). The query feature is the mean of its pixels' features plus a
    position encoding.
    """

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        self.cfg = cfg
        self.pos_enc = nn.Sequential(nn.Linear(3 * 2 * 6 + 2, cfg.channels), nn.GELU(), nn.Linear(cfg.channels, cfg.channels))
        self.proj = nn.Linear(cfg.channels, cfg.channels)

    def encode_position(self, pos: torch.Tensor, size: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
        """Fourier features of a position [Q, 3] m (relative to the query frame's origin) -> [Q, C]."""
        freqs = 2.0 ** torch.arange(6, device=pos.device, dtype=pos.dtype) / 64.0
        x = pos[..., None] * freqs * math.pi  # [Q, 3, 6]
        enc = torch.cat([x.sin(), x.cos()], -1).flatten(1)
        return self.pos_enc(torch.cat([enc, torch.log(size)[:, None], sky[:, None].to(pos.dtype)], 1))

    @torch.no_grad()
    def candidates(self, feat: torch.Tensor, depth: torch.Tensor, sky_p: torch.Tensor, batch: ViewBatch,
                   origin: torch.Tensor, views: torch.Tensor | None = None) -> dict:
        """Lifted points of the feature pixels of ``views`` (default all). Returns a dict of [M] arrays:
        pos (query frame), size, agent, sky, view, flat pixel index, and the voxel key [M, 5] long."""
        cfg = self.cfg
        V, C, h, w = feat.shape
        vs = torch.arange(V, device=feat.device) if views is None else views
        H, W = batch.images.shape[-2:]
        sy, sx = H / h, W / w
        yy, xx = torch.meshgrid(torch.arange(h, device=feat.device), torch.arange(w, device=feat.device), indexing="ij")
        # Feature pixel (i, j) covers image pixels [sx*j, sx*(j+1)); its centre in image pixels:
        uv = torch.stack([(xx + 0.5) * sx - 0.5, (yy + 0.5) * sy - 0.5], -1).reshape(-1, 2).to(feat.dtype)
        out = {k: [] for k in ("pos", "size", "agent", "sky", "view", "pix", "key")}
        fx = batch.Ks[:, 0, 0] / sx
        for v in vs.tolist():
            K = batch.Ks[v]
            is_sky = (sky_p[v].reshape(-1) > 0.5)
            z = depth[v].reshape(-1).clamp(self.cfg.depth_min, self.cfg.depth_max)
            ray = torch.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], -1)
            z = torch.where(is_sky, cfg.sky_range / torch.sqrt(1 + (ray ** 2).sum(-1)), z)
            pts = geometry.unproject_pixels(K, batch.cam_to_world[v], uv, z)
            rng = z * torch.sqrt(1 + (ray ** 2).sum(-1))
            size = (rng / fx[v]).clamp(cfg.voxel_min, cfg.voxel_max)
            sky_size = cfg.sky_range * math.radians(cfg.sky_voxel_deg)
            size = torch.where(is_sky, torch.full_like(size, sky_size), size)
            agent = torch.full((pts.shape[0],), -1, dtype=torch.long, device=feat.device)
            pos = pts.clone()
            t = batch.frame[v]
            if batch.agent_to_world.shape[1] > 0:
                a2w = batch.agent_to_world[t]  # [A, 4, 4]
                w2a = torch.linalg.inv(a2w)
                local = torch.einsum("aij,mj->ami", w2a[:, :3, :3], pts) + w2a[:, None, :3, 3]  # [A, M, 3]
                half = batch.agent_size / 2 + cfg.agent_margin
                inside = (local.abs() <= half[:, None]).all(-1) & batch.agent_valid[t][:, None] & ~is_sky[None]
                hit = inside.any(0)
                first = inside.float().argmax(0)
                agent = torch.where(hit, first, agent)
                pos = torch.where(hit[:, None], local[first, torch.arange(pts.shape[0], device=pts.device)], pos)
                # Agents are small: finer voxels so a car gets more than a handful of queries.
                size = torch.where(hit, size.clamp(max=0.5), size)
            # Voxel level: powers of two of voxel_min; keys are unique per (agent, level, cell).
            level = torch.round(torch.log2(size / cfg.voxel_min)).clamp_min(0)
            cell_size = cfg.voxel_min * 2.0 ** level
            rel = torch.where((agent >= 0)[:, None], pos, pos - origin)
            cell = torch.floor(rel / cell_size[:, None]).long()
            sky_key = torch.where(is_sky, torch.ones_like(agent), torch.zeros_like(agent))
            key = torch.stack([agent * 2 + sky_key, level.long(), cell[:, 0], cell[:, 1], cell[:, 2]], -1)
            for k, x in (("pos", pos), ("size", cell_size), ("agent", agent), ("sky", is_sky),
                         ("view", torch.full_like(agent, v)), ("pix", torch.arange(h * w, device=feat.device)),
                         ("key", key)):
                out[k].append(x)
        return {k: torch.cat(x) for k, x in out.items()}

    def forward(self, cand: dict, feat: torch.Tensor, max_queries: int | None = None,
                generator: torch.Generator | None = None) -> tuple[Queries, torch.Tensor]:
        """Voxel-thin the candidates into queries. Returns (queries, unique voxel keys [Q, 5])."""
        packed = pack_keys(cand["key"])
        if self.cfg.queries == "pixel":
            # Pixel-aligned baseline: every lifted pixel is its own query.
            first = torch.arange(len(packed), device=packed.device)
            inv = first
        else:
            # 1-D unique on packed keys: unique over rows (dim=0) compares row by row and is ~50x slower.
            _, inv = torch.unique(packed, return_inverse=True)
            first = torch.full((int(inv.max()) + 1 if len(inv) else 0,), len(inv), dtype=torch.long,
                               device=inv.device).scatter_reduce(0, inv, torch.arange(len(inv), device=inv.device), "amin")
        keys = cand["key"][first]
        Q = keys.shape[0]
        V, C, h, w = feat.shape
        pix_feat = feat.permute(0, 2, 3, 1).reshape(V * h * w, C)[cand["view"] * h * w + cand["pix"]]
        count = torch.zeros(Q, device=feat.device).index_add_(0, inv, torch.ones_like(inv, dtype=feat.dtype))
        mean_feat = torch.zeros(Q, C, device=feat.device, dtype=feat.dtype).index_add(0, inv, pix_feat) / count[:, None]
        pos = torch.zeros(Q, 3, device=feat.device, dtype=feat.dtype).index_add_(0, inv, cand["pos"]) / count[:, None]
        size = torch.zeros(Q, device=feat.device).index_add_(0, inv, cand["size"]) / count
        agent = torch.full((Q,), -1, dtype=torch.long, device=feat.device).scatter_(0, inv, cand["agent"])
        sky = torch.zeros(Q, dtype=torch.bool, device=feat.device).scatter_(0, inv, cand["sky"])
        q = Queries(pos, size, mean_feat, agent, sky)
        if max_queries is not None and Q > max_queries:
            keep = torch.randperm(Q, generator=generator, device=feat.device)[:max_queries]
            q, keys = q.subset(keep), keys[keep]
        return q, keys

    def embed(self, q: Queries, origin: torch.Tensor) -> Queries:
        rel = torch.where((q.agent >= 0)[:, None], q.pos, q.pos - origin)
        feat = self.proj(q.feat) + self.encode_position(rel, q.size, q.sky)
        return Queries(q.pos, q.size, feat, q.agent, q.sky, q.seen)


# ----------------------------------------------------------------------------- aggregation


class KeyPoints(nn.Module):
    """P key points per query: the centre plus P - 1 learned offsets bounded by the query's size.
    feat [Q, C], pos [Q, 3], size [Q] -> [Q, P, 3] m in the query's frame."""

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        self.P = cfg.key_points
        self.lin = nn.Linear(cfg.channels, 3 * (self.P - 1))
        nn.init.zeros_(self.lin.bias)
        nn.init.normal_(self.lin.weight, std=0.02)

    def forward(self, feat: torch.Tensor, pos: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        off = torch.tanh(self.lin(feat)).view(-1, self.P - 1, 3) * size[:, None, None]
        return torch.cat([pos[:, None], pos[:, None] + off], 1)


class VisibilityAggregator(nn.Module):
    """Visibility-weighted sampling of view features at projected key points.

    For query q, view v, key point p: sample the view's feature map bilinearly at the key point's pixel;
    the visibility logit comes from an MLP over (the query feature, the sampled feature, distance to the
    frustum's edge in feature pixels, depth agreement (z - predicted z at that pixel) / predicted z (a sample
    behind a predicted surface is occluded), log camera distance). Samples behind
    the camera, outside the image or at times when an agent is not observed get weight 0 (masked softmax
    over views and key points). Returns (aggregated feature [Q, C], visibility mass [Q] in [0, 1]: 0 for a
    query that no view sees, whose update is then masked out).
    """

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        c = cfg.channels
        self.mode = cfg.visibility
        # The visibility MLP's first layer is linear in the sampled feature, and bilinear sampling is
        # linear too: project the feature maps once (1x1 conv) and sample the projection, instead of
        # running a linear layer over every [Q, V, P] sample.
        self.s_proj = nn.Conv2d(c, 32, 1)
        self.q_proj = nn.Linear(c, 32)
        self.g_proj = nn.Linear(3, 32)
        self.vis = nn.Linear(32, 1)
        # Values are projected before sampling for the same reason (the weighted mean is linear).
        self.v_proj = nn.Conv2d(c, 32, 1)
        self.out = nn.Linear(32, c)

    def forward(self, qfeat: torch.Tensor, kp: torch.Tensor, q_to_world: torch.Tensor, pose_valid: torch.Tensor,
                feat: torch.Tensor, depth: torch.Tensor, batch: ViewBatch) -> tuple[torch.Tensor, torch.Tensor]:
        Q, P, _ = kp.shape
        V, C, h, w = feat.shape
        H, W = batch.images.shape[-2:]
        uv, z = project(kp, q_to_world, batch)  # [Q, V, P, 2], [Q, V, P]
        inside = (z > 0.2) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) & (uv[..., 1] >= -0.5) \
            & (uv[..., 1] <= H - 0.5) & pose_valid[..., None]
        # Only samples that land in an image are gathered (most of [Q, V, P] do not): bilinear sampling
        # by hand from a channels-last table of every view's maps.
        qi, vi, pi = inside.nonzero(as_tuple=True)
        maps = [self.v_proj(feat), depth[:, None]] + ([self.s_proj(feat)] if self.mode != "uniform" else [])
        C = 32
        table = torch.cat(maps, 1).permute(0, 2, 3, 1).reshape(V * h * w, -1)
        fu = ((uv[qi, vi, pi, 0] + 0.5) * (w / W) - 0.5).clamp(0, w - 1)
        fv = ((uv[qi, vi, pi, 1] + 0.5) * (h / H) - 0.5).clamp(0, h - 1)
        x0, y0 = fu.floor().long().clamp(max=w - 2), fv.floor().long().clamp(max=h - 2)
        ax, ay = (fu - x0)[:, None], (fv - y0)[:, None]
        base = vi * (h * w) + y0 * w + x0
        s = table[base] * ((1 - ax) * (1 - ay))
        s = s + table[base + 1] * (ax * (1 - ay))
        s = s + table[base + w] * ((1 - ax) * ay)
        s = s + table[base + w + 1] * (ax * ay)  # [N, 32 values + depth (+ 32 visibility)]
        sfeat, sdepth = s[:, :C], s[:, C]
        zi = z[qi, vi, pi]
        if self.mode == "uniform":
            logit = torch.zeros_like(zi)
        else:
            agree = ((zi - sdepth) / sdepth.clamp_min(0.5)).clamp(-3, 3)
            edge = torch.minimum(torch.minimum(fu, w - 1 - fu), torch.minimum(fv, h - 1 - fv)).clamp(max=4) / 4
            geo = torch.stack([edge, agree, torch.log(zi.clamp_min(0.2))], -1)
            logit = self.vis(F.gelu(self.q_proj(qfeat)[qi] + s[:, C + 1:] + self.g_proj(geo)))[:, 0]
        # Softmax over each query's samples (views x key points); no samples -> no weight, no update.
        top = torch.full((Q,), -1e30, dtype=logit.dtype, device=logit.device)
        top = top.scatter_reduce(0, qi, logit.detach(), reduce="amax")
        e = torch.exp(logit - top[qi])
        denom = torch.zeros(Q, dtype=e.dtype, device=e.device).index_add(0, qi, e)
        wgt = e / denom[qi].clamp_min(1e-12)
        agg = torch.zeros(Q, C, dtype=sfeat.dtype, device=sfeat.device).index_add(0, qi, wgt[:, None] * sfeat)
        # Visibility mass: the share of samples that landed in an image (0: nobody saw the query).
        mass = torch.zeros(Q, dtype=z.dtype, device=z.device).index_add(0, qi, torch.ones_like(zi)) / (V * P)
        self.last_samples = int(qi.shape[0])
        return self.out(agg), mass


class RefineLayer(nn.Module):
    """aggregate -> feed-forward -> refine position (bounded by the query size). Queries with no visible
    sample keep their feature and position."""

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        c = cfg.channels
        self.kp = KeyPoints(cfg)
        self.agg = VisibilityAggregator(cfg)
        self.norm1 = nn.LayerNorm(c)
        self.mix = nn.Sequential(nn.Linear(2 * c, c), nn.GELU(), nn.Linear(c, c))
        self.norm2 = nn.LayerNorm(c)
        self.ffn = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        self.delta = nn.Linear(c, 3)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, q: Queries, feat: torch.Tensor, depth: torch.Tensor, batch: ViewBatch,
                q_to_world: torch.Tensor, pose_valid: torch.Tensor) -> tuple[Queries, torch.Tensor]:
        kp = self.kp(q.feat, q.pos, q.size)
        agg, mass = self.agg(q.feat, kp, q_to_world, pose_valid, feat, depth, batch)
        seen = (mass > 0).to(q.feat.dtype)[:, None]
        f = q.feat + seen * self.mix(torch.cat([self.norm1(q.feat), agg], -1))
        f = f + self.ffn(self.norm2(f))
        movable = (~q.sky).to(f.dtype)[:, None]
        pos = q.pos + seen * movable * torch.tanh(self.delta(f)) * 0.5 * q.size[:, None]
        return Queries(pos, q.size, f, q.agent, q.sky, q.seen), mass


# ----------------------------------------------------------------------------- Gaussians


class GaussianHead(nn.Module):
    """Each query -> K Gaussians in the query's frame: means = pos + tanh(.) x size, log-scales around
    log(size / 4) (bounded to x e^±3), unit quaternions, opacity and RGB in (0, 1) (SH degree 0)."""

    def __init__(self, cfg: WorldRecConfig):
        super().__init__()
        self.K = cfg.gaussians_per_query
        self.norm = nn.LayerNorm(cfg.channels)
        self.lin = nn.Linear(cfg.channels, self.K * 14)
        nn.init.normal_(self.lin.weight, std=0.01)
        nn.init.zeros_(self.lin.bias)

    def forward(self, q: Queries) -> dict[str, torch.Tensor]:
        Q, K = len(q), self.K
        o = self.lin(self.norm(q.feat)).view(Q, K, 14)
        size = q.size[:, None, None]
        means = q.pos[:, None] + torch.tanh(o[..., 0:3]) * size
        log_scales = torch.log(size / 4) + 3.0 * torch.tanh(o[..., 3:6] / 3.0)
        quats = F.normalize(o[..., 6:10] + torch.tensor([1.0, 0, 0, 0], device=o.device, dtype=o.dtype), dim=-1)
        opacity_logits = o[..., 10] - 1.0
        rgb = torch.sigmoid(o[..., 11:14])
        return {"means": means.reshape(Q * K, 3), "log_scales": log_scales.reshape(Q * K, 3),
                "quats": quats.reshape(Q * K, 4), "opacity_logits": opacity_logits.reshape(Q * K),
                "rgb": rgb.reshape(Q * K, 3), "agent": q.agent.repeat_interleave(K)}


def place_gaussians(g: dict[str, torch.Tensor], agent_to_world: torch.Tensor, agent_valid: torch.Tensor,
                    agent_ids: torch.Tensor) -> GaussianScene:
    """Gaussians in query frames -> a world :class:`GaussianScene` at one time: agent Gaussians moved by
    their box pose agent_to_world [A, 4, 4] (dropped where agent_valid [A] is False); differentiable."""
    agent = g["agent"]
    keep = torch.ones_like(agent, dtype=torch.bool)
    means, quats = g["means"], g["quats"]
    dyn = agent >= 0
    if dyn.any():
        a = agent.clamp_min(0)
        keep = ~dyn | agent_valid[a]
        R = agent_to_world[a, :3, :3]
        moved = torch.einsum("nij,nj->ni", R, means) + agent_to_world[a, :3, 3]
        means = torch.where(dyn[:, None], moved, means)
        qa = geometry.rotmat_to_quat(R)
        quats = torch.where(dyn[:, None], geometry.quat_multiply(qa, quats), quats)
    inst = torch.where(dyn, agent_ids[agent.clamp_min(0)] + 1 if len(agent_ids) else agent, torch.zeros_like(agent))
    scene = GaussianScene(means=means[keep], quats=quats[keep], log_scales=g["log_scales"][keep],
                          opacity_logits=g["opacity_logits"][keep], colors=rgb_to_sh0(g["rgb"][keep])[:, None, :],
                          instance_id=inst[keep].to(torch.int32), semantic=torch.zeros(int(keep.sum()), dtype=torch.int32,
                                                                                         device=means.device),
                          dynamic=dyn[keep])
    return scene


# ----------------------------------------------------------------------------- the model


class WorldRec(nn.Module):
    """The whole feed-forward model; see the module docstring.

    ``reconstruct(batch)`` runs one window and returns the Gaussians in query frames (a dict, see
    :class:`GaussianHead`) plus the queries and the depth logits (for the depth loss).
    """

    def __init__(self, cfg: WorldRecConfig | None = None):
        super().__init__()
        self.cfg = cfg or WorldRecConfig()
        self.encoder = ImageEncoder(self.cfg)
        self.lifter = QueryLifter(self.cfg)
        self.layers = nn.ModuleList([RefineLayer(self.cfg) for _ in range(self.cfg.layers)])
        self.head = GaussianHead(self.cfg)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feat, logits = self.encoder(images)
        depth, sky = depth_from_logits(logits, self.cfg)
        return {"feat": feat, "depth_logits": logits, "depth": depth, "sky": sky}

    def refine(self, q: Queries, enc: dict, batch: ViewBatch) -> tuple[Queries, torch.Tensor]:
        """Run the refinement layers on queries against the views of ``batch``. Returns the queries and the
        visibility mass [Q] of the last layer."""
        q_to_world, pose_valid = query_to_world(q.agent, batch)
        mass = torch.zeros(len(q), device=q.pos.device)
        depth = enc["depth"].detach()
        for layer in self.layers:
            q, mass = layer(q, enc["feat"], depth, batch, q_to_world, pose_valid)
        return q, mass

    def reconstruct(self, batch: ViewBatch, max_queries: int | None = None,
                    generator: torch.Generator | None = None) -> dict:
        enc = self.encode(batch.images)
        origin = batch.cam_to_world[0, :3, 3]
        cand = self.lifter.candidates(enc["feat"], enc["depth"].detach(), enc["sky"].detach(), batch, origin)
        q, keys = self.lifter(cand, enc["feat"], max_queries, generator)
        q = self.lifter.embed(q, origin)
        q, mass = self.refine(q, enc, batch)
        q.seen = q.seen + mass
        return {"gaussians": self.head(q), "queries": q, "keys": keys, "depth_logits": enc["depth_logits"],
                "encoding": enc}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["pack_keys", "WorldRecConfig", "WorldRec", "ViewBatch", "Queries", "ImageEncoder", "QueryLifter", "KeyPoints",
           "VisibilityAggregator", "RefineLayer", "GaussianHead", "place_gaussians", "project", "query_to_world",
           "depth_targets", "depth_from_logits", "depth_bin_centres"]
