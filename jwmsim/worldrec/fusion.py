"""Incremental fusion: a :class:`World` that grows and is refined as the ego drives.

The world is a set of sparse queries (:class:`jwmsim.worldrec.model.Queries`) keyed by voxel. An
``update`` with new keyframes

* re-observes the queries that the new views see (centre in an image, in front of the camera and not
  behind the predicted surface there): each is re-refined against the new views and fused with what the
  world held, weighted by visibility mass (a running mean of per-window estimates, which is what the
  model was trained to produce);
* spawns queries only for voxels the world does not hold yet;
* keeps the count bounded: beyond ``max_queries`` the queries farthest from the newest ego pose go
  first (space the ego has left behind).

``reconstruct_clip(..., chunk=None)`` is the one-shot mode: all keyframes' points are lifted and
voxel-thinned together, and every query is refined once against the window of keyframes around the
keyframe that saw most of it. Both modes keep agent queries in their box frame (keyed by track id), so
``World.scene(agents)`` places them wherever the simulator moved the boxes.

Frames and units: :mod:`jwmsim.geometry`. Shapes: Q queries, K Gaussians per query.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jwmsim.splat.scene import GaussianScene
from jwmsim.worldrec.data import make_batch
from jwmsim.worldrec.model import Queries, ViewBatch, WorldRec, pack_keys, place_gaussians, project

WORLD_FORMAT = "jwmsim.world"
WORLD_VERSION = "1"


@dataclass
class AgentPoses:
    """Agent boxes at one instant. ids [A] long track ids; agent_to_world [A, 4, 4] (box centre, yaw);
    valid [A] bool."""

    ids: torch.Tensor
    agent_to_world: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def from_log(cls, log, t: int) -> "AgentPoses":
        from jwmsim.worldrec.data import agent_poses

        a2w, valid, _, ids = agent_poses(log, [t])
        return cls(torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(a2w[0], dtype=torch.float32),
                   torch.as_tensor(valid[0]))


class World:
    """A reconstructed Gaussian world, fused incrementally.

    model: a trained :class:`WorldRec` (eval mode; no gradients flow here). window: keyframes per
    refinement window. max_queries: query budget (the Gaussian count is at most K x this, fewer after
    pruning transparent Gaussians).
    """

    def __init__(self, model: WorldRec, window: int = 4, max_queries: int = 60000, min_opacity: float = 0.01):
        self.model = model.eval()
        self.window = int(window)
        self.max_queries = int(max_queries)
        self.min_opacity = float(min_opacity)
        self.device = next(model.parameters()).device
        self.queries: Queries | None = None
        self.track: torch.Tensor = torch.zeros(0, dtype=torch.long)  # [Q] track id (-1 static)
        self.keys: torch.Tensor = torch.zeros(0, 5, dtype=torch.long)  # [Q, 5] voxel keys (agent slot = track id)
        self.origin: torch.Tensor | None = None
        self._gaussians: dict | None = None
        self.frames_seen: list[int] = []

    def __len__(self) -> int:
        return 0 if self.queries is None else len(self.queries)

    # ------------------------------------------------------------------ building

    def _batch(self, log, keyframes: list[int]) -> ViewBatch:
        views, _ = make_batch(log, keyframes, sorted(keyframes), with_depth=False)
        return views.to(self.device)

    def _local_agents(self, track: torch.Tensor, batch: ViewBatch) -> torch.Tensor:
        """Track ids [Q] -> indices into batch.agent_ids (-1 static, or a track the batch lacks)."""
        idx = torch.full_like(track, -1)
        if len(batch.agent_ids) and (track >= 0).any():
            order = torch.argsort(batch.agent_ids)
            sorted_ids = batch.agent_ids[order]
            pos = torch.searchsorted(sorted_ids, track.clamp_min(0)).clamp(max=len(sorted_ids) - 1)
            hit = (sorted_ids[pos] == track) & (track >= 0)
            idx = torch.where(hit, order[pos], idx)
        return idx

    @torch.no_grad()
    def _lift(self, batch: ViewBatch, enc: dict) -> tuple[Queries, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries lifted from the batch (not refined). Returns (queries with embedded features, global voxel
        keys [Q, 5], track ids [Q], home view [Q] (the view that contributed most points))."""
        m = self.model
        if self.origin is None:
            self.origin = batch.cam_to_world[0, :3, 3].clone()
        cand = m.lifter.candidates(enc["feat"], enc["depth"], enc["sky"], batch, self.origin)
        q, keys = m.lifter(cand, enc["feat"])
        # Voxel keys carry the batch-local agent index; make them global with the track id.
        track = torch.where(q.agent >= 0, batch.agent_ids[q.agent.clamp_min(0)] if len(batch.agent_ids) else q.agent,
                            torch.full_like(q.agent, -1))
        gkeys = keys.clone()
        sky_bit = keys[:, 0] - 2 * q.agent  # agent * 2 + sky
        gkeys[:, 0] = track * 2 + sky_bit
        # Home view: majority view of the candidates of each voxel.
        _, inv = torch.unique(pack_keys(cand["key"]), return_inverse=True)
        V = batch.num_views
        votes = torch.zeros(len(keys), V, device=keys.device).index_put_((inv, cand["view"]), torch.ones_like(inv, dtype=torch.float32), accumulate=True)
        home = votes.argmax(1)
        q = m.lifter.embed(q, self.origin)
        return q, gkeys, track, home

    @torch.no_grad()
    def _visible(self, batch: ViewBatch, enc: dict) -> torch.Tensor:
        """[Q] bool: world queries whose centre one of the batch's views sees (in the image, in front,
        not more than 20 % behind the predicted surface)."""
        q = self.queries
        local = self._local_agents(self.track, batch)
        from jwmsim.worldrec.model import query_to_world

        q2w, ok = query_to_world(local, batch)
        ok = ok & ~((self.track >= 0) & (local < 0))[:, None]
        uv, z = project(q.pos[:, None], q2w, batch)  # [Q, V, 1, 2], [Q, V, 1]
        uv, z = uv[:, :, 0], z[:, :, 0]
        H, W = batch.images.shape[-2:]
        h, w = enc["depth"].shape[-2:]
        inside = (z > 0.2) & (uv[..., 0] >= 0) & (uv[..., 0] <= W - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= H - 1) & ok
        iu = ((uv[..., 0] + 0.5) * w / W).long().clamp(0, w - 1)
        iv = ((uv[..., 1] + 0.5) * h / H).long().clamp(0, h - 1)
        vidx = torch.arange(batch.num_views, device=z.device)[None].expand_as(iu)
        d = enc["depth"][vidx, iv, iu]
        sky = enc["sky"][vidx, iv, iu] > 0.5
        front = (z <= d * 1.2 + 0.5) | sky | q.sky[:, None]
        return (inside & front).any(1)

    @torch.no_grad()
    def update(self, log, keyframes: list[int]) -> dict:
        """Fuse the log's main-rig frames ``keyframes`` (log frame indices). Returns counts and timings."""
        t0 = time.perf_counter()
        batch = self._batch(log, keyframes)
        enc = self.model.encode(batch.images)
        stats = {"refined": 0, "spawned": 0}
        if self.queries is not None and len(self.queries):
            vis = self._visible(batch, enc)
            if vis.any():
                idx = vis.nonzero()[:, 0]
                old = self.queries.subset(idx)
                fresh = Queries(old.pos, old.size, self._init_feat[idx], self._local_agents(self.track[idx], batch),
                                old.sky, old.seen)
                new, mass = self.model.refine(fresh, enc, batch)
                w_old, w_new = old.seen[:, None], mass[:, None]
                tot = (w_old + w_new).clamp_min(1e-6)
                self.queries.feat[idx] = (w_old * old.feat + w_new * new.feat) / tot
                self.queries.pos[idx] = (w_old * old.pos + w_new * new.pos) / tot
                self.queries.seen[idx] = old.seen + mass
                stats["refined"] = int(len(idx))
        q, keys, track, _ = self._lift(batch, enc)
        if len(self.keys):
            known = _rows_in(keys, self.keys)
            keep = ~known
            q, keys, track = q.subset(keep), keys[keep], track[keep]
        if len(q):
            init = q.feat.clone()
            q, mass = self.model.refine(q, enc, batch)
            q.seen = q.seen + mass
            q.agent = torch.full_like(q.agent, -1)  # batch-local indices are meaningless beyond this update
            self._append(q, keys, track, init)
            stats["spawned"] = int(len(q))
        self.frames_seen += list(keyframes)
        self._remember_agents(batch)
        self._bound(batch)
        self._gaussians = None
        stats["seconds"] = time.perf_counter() - t0
        stats["queries"] = len(self)
        return stats

    @torch.no_grad()
    def build_one_shot(self, log, keyframes: list[int]) -> dict:
        """One-shot reconstruction of ``keyframes``: lift and voxel-thin all of them together, then refine
        every query once against the window of ``self.window`` keyframes around its home keyframe."""
        t0 = time.perf_counter()
        if self.queries is not None:
            raise RuntimeError("build_one_shot needs an empty World; make a new one")
        n_cam = len(log.rig)
        # Encode in windows to bound memory; lift from every keyframe.
        encs, batches = [], []
        step = self.window
        for s in range(0, len(keyframes), step):
            b = self._batch(log, keyframes[s:s + step])
            batches.append(b)
            encs.append(self.model.encode(b.images))
        full = ViewBatch(images=torch.cat([b.images for b in batches]), Ks=torch.cat([b.Ks for b in batches]),
                         cam_to_world=torch.cat([b.cam_to_world for b in batches]),
                         frame=torch.arange(len(keyframes), device=self.device).repeat_interleave(n_cam),
                         agent_to_world=_agents_at(log, keyframes, self.device)[0],
                         agent_valid=_agents_at(log, keyframes, self.device)[1],
                         agent_size=batches[0].agent_size, agent_ids=batches[0].agent_ids)
        enc_full = {k: torch.cat([e[k] for e in encs]) for k in ("feat", "depth", "sky")}
        q, keys, track, home = self._lift(full, enc_full)
        home_frame = home // n_cam
        init = q.feat.clone()
        out = []
        half = self.window // 2
        for c in range(0, len(keyframes)):
            sel = (home_frame == c).nonzero()[:, 0]
            if not len(sel):
                continue
            lo = max(0, min(c - half, len(keyframes) - self.window))
            win = list(range(lo, min(len(keyframes), lo + self.window)))
            vsel = torch.cat([torch.arange(f * n_cam, (f + 1) * n_cam, device=self.device) for f in win])
            b = ViewBatch(images=full.images[vsel], Ks=full.Ks[vsel], cam_to_world=full.cam_to_world[vsel],
                          frame=full.frame[vsel], agent_to_world=full.agent_to_world, agent_valid=full.agent_valid,
                          agent_size=full.agent_size, agent_ids=full.agent_ids)
            e = {k: enc_full[k][vsel] for k in ("feat", "depth", "sky")}
            sub = q.subset(sel)
            r, mass = self.model.refine(sub, e, b)
            r.seen = r.seen + mass
            out.append((sel, r))
        order = torch.cat([s for s, _ in out])
        qs = Queries.cat([r for _, r in out])
        qs.agent = torch.full_like(qs.agent, -1)
        self._append(qs, keys[order], track[order], init[order])
        self.frames_seen += list(keyframes)
        last = self._batch(log, keyframes[-1:])
        self._remember_agents(last)
        self._bound(last)
        self._gaussians = None
        return {"seconds": time.perf_counter() - t0, "queries": len(self), "spawned": len(self)}

    def _remember_agents(self, batch: ViewBatch) -> None:
        """Agent boxes at the newest frame fused: where a world file places agents by default."""
        t = int(batch.frame.max())
        self.last_agents = AgentPoses(batch.agent_ids.cpu(), batch.agent_to_world[t].cpu().float(),
                                      batch.agent_valid[t].cpu())

    def _append(self, q: Queries, keys: torch.Tensor, track: torch.Tensor, init: torch.Tensor) -> None:
        if self.queries is None:
            self.queries, self.keys, self.track, self._init_feat = q, keys, track, init
        else:
            self.queries = Queries.cat([self.queries, q])
            self.keys = torch.cat([self.keys, keys])
            self.track = torch.cat([self.track, track])
            self._init_feat = torch.cat([self._init_feat, init])

    def _bound(self, batch: ViewBatch) -> None:
        if len(self) <= self.max_queries:
            return
        ego = batch.cam_to_world[-1, :3, 3]
        static = self.track < 0
        d = torch.where(static & ~self.queries.sky, (self.queries.pos - ego).norm(dim=-1), torch.zeros(len(self), device=ego.device))
        keep = torch.argsort(d)[: self.max_queries]
        keep = keep.sort().values
        self.queries = self.queries.subset(keep)
        self.keys, self.track, self._init_feat = self.keys[keep], self.track[keep], self._init_feat[keep]

    # ------------------------------------------------------------------ rendering

    @torch.no_grad()
    def gaussians(self) -> dict[str, torch.Tensor]:
        """The world's Gaussians in query frames (cached until the next update), transparent ones dropped.
        Adds ``track`` [N]: the agent's track id (-1 static)."""
        if self._gaussians is None:
            if self.queries is None:
                raise RuntimeError("the World is empty: call update() or build_one_shot() first")
            g = self.model.head(self.queries)
            track = self.track.repeat_interleave(self.model.cfg.gaussians_per_query)
            keep = torch.sigmoid(g["opacity_logits"]) >= self.min_opacity
            g = {k: v[keep] for k, v in g.items()}
            g["track"] = track[keep]
            self._gaussians = g
        return self._gaussians

    def num_gaussians(self) -> int:
        return int(self.gaussians()["means"].shape[0])

    @torch.no_grad()
    def scene(self, agents: AgentPoses | None = None, extra: dict | None = None) -> GaussianScene:
        """The world as a :class:`GaussianScene` with agents at ``agents`` (agents missing there are not
        drawn; None: static world only). extra: more agent Gaussians in box frames with their track ids
        (means, quats, log_scales, opacity_logits, rgb, track; e.g. :func:`jwmsim.assets.asset_gaussians` for
        agents the world never saw), placed like the world's own."""
        g = dict(self.gaussians())
        if extra is not None:
            keys = ("means", "quats", "log_scales", "opacity_logits", "rgb", "track")
            dev = g["means"].device
            g = {k: torch.cat([g[k], extra[k].to(dev, g[k].dtype)]) for k in keys}
        return place_tracked(g, g.pop("track"), agents)

    @torch.no_grad()
    def render(self, cameras, ego_to_world, agents: AgentPoses | None = None, background=(0.0, 0.0, 0.0),
               extra: dict | None = None):
        """(rgb [C, H, W, 3] in [0, 1], alpha [C, H, W]) of the world seen by ``cameras`` (jwmsim.geometry
        Cameras) at ego pose ``ego_to_world`` [4, 4], agents at ``agents`` (None: static world only); extra:
        as in :meth:`scene`."""
        from jwmsim.splat.rasterize import rasterize

        r = rasterize(self.scene(agents, extra), cameras=cameras, ego_to_world=ego_to_world, background=background)
        return r.rgb.clamp(0, 1), r.alpha.reshape(r.rgb.shape[:3]).clamp(0, 1)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """A world file (safetensors): the Gaussians in query frames with their track ids, so a renderer or
        the env can place agents without the model. Written atomically."""
        from safetensors.torch import save_file

        g = self.gaussians()
        path = Path(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in g.items() if k != "agent"}
        a = getattr(self, "last_agents", None)
        if a is not None:
            tensors.update({"agent_ids": a.ids.contiguous(), "agent_to_world": a.agent_to_world.contiguous(),
                            "agent_valid": a.valid.contiguous()})
        meta = {"format": WORLD_FORMAT, "version": WORLD_VERSION, "frames": ",".join(map(str, self.frames_seen))}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)


def place_tracked(g: dict[str, torch.Tensor], track: torch.Tensor, agents: AgentPoses | None) -> GaussianScene:
    """Gaussians in query frames with track ids [N] (-1 static) -> a world :class:`GaussianScene` with each
    agent's Gaussians at its box in ``agents`` (tracks absent there are not drawn; None: static only)."""
    if agents is None or len(agents.ids) == 0:
        keep = track < 0
        agent = torch.full_like(track, -1)
        ids, a2w, valid = (torch.zeros(0, dtype=torch.long), torch.zeros(0, 4, 4),
                           torch.zeros(0, dtype=torch.bool))
    else:
        ids = agents.ids.to(track.device)
        order = torch.argsort(ids)
        pos = torch.searchsorted(ids[order], track.clamp_min(0)).clamp(max=len(ids) - 1)
        hit = (ids[order][pos] == track) & (track >= 0)
        agent = torch.where(hit, order[pos], torch.full_like(track, -1))
        keep = (track < 0) | hit
        a2w, valid = agents.agent_to_world.to(track.device, torch.float32), agents.valid.to(track.device)
    g = {k: v[keep] for k, v in g.items()}
    g["agent"] = agent[keep]
    return place_gaussians(g, a2w, valid, ids)


def _rows_in(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a)] bool: rows of a [N, 5] that occur in b [M, 5]."""
    if not len(b) or not len(a):
        return torch.zeros(len(a), dtype=torch.bool, device=a.device)
    return torch.isin(pack_keys(a), pack_keys(b))


def _agents_at(log, frames: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    from jwmsim.worldrec.data import agent_poses

    a2w, valid, _, _ = agent_poses(log, frames)
    return torch.as_tensor(a2w, dtype=torch.float32, device=device), torch.as_tensor(valid, device=device)


def is_world_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file written by :meth:`World.save`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == WORLD_FORMAT
    except Exception:
        return False


def load_world_scene(path: str | os.PathLike, agents: AgentPoses | None = None, static_only: bool = False
                     ) -> GaussianScene:
    """A world file -> GaussianScene with agents at ``agents`` (default: where the world last saw them;
    static_only drops them). Clear errors for missing, truncated or foreign files."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"world file {path} does not exist; make one with `jwmsim reconstruct LOG --out {path}`")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        g = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise ValueError(f"{path} is not a readable world file ({type(e).__name__}: {e}); rebuild it with "
                         f"`jwmsim reconstruct LOG --out {path}`") from None
    if meta.get("format") != WORLD_FORMAT:
        raise ValueError(f"{path} is not a jwmsim world file (format {meta.get('format')!r}); make one with "
                         f"`jwmsim reconstruct`")
    need = {"means", "log_scales", "quats", "opacity_logits", "rgb", "track"}
    if not need <= set(g):
        raise ValueError(f"{path} lacks {sorted(need - set(g))}; rebuild it with `jwmsim reconstruct`")
    g = {k: v.float() if v.is_floating_point() else v for k, v in g.items()}
    track = g.pop("track").long()
    stored = [g.pop(k, None) for k in ("agent_ids", "agent_to_world", "agent_valid")]
    if agents is None and not static_only and stored[0] is not None:
        agents = AgentPoses(stored[0].long(), stored[1], stored[2].bool())
    return place_tracked(g, track, None if static_only else agents)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> WorldRec:
    """A WorldRec from a weights file written by training (safetensors, architecture in its metadata)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from jwmsim.worldrec.model import WorldRecConfig

    path = Path(path)
    rebuild = "rebuild it with `jwmsim train worldrec` (README: WorldRec) or restore it with `git checkout`"
    if not path.is_file():
        raise FileNotFoundError(f"WorldRec weights {path} do not exist; {rebuild}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:
        raise ValueError(f"{path} is not a readable WorldRec weights file ({type(e).__name__}: {e}); {rebuild}") from None
    if meta.get("format") != "jwmsim.worldrec" or "config" not in meta:
        raise ValueError(f"{path} is not a WorldRec weights file (format {meta.get('format')!r}); {rebuild}")
    model = WorldRec(WorldRecConfig.from_dict(json.loads(meta["config"])))
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise ValueError(f"{path} does not match the WorldRec architecture ({str(e).splitlines()[0]}); {rebuild}") from None
    return model.to(device).eval()


__all__ = ["World", "AgentPoses", "load_world_scene", "load_model", "is_world_file", "WORLD_FORMAT"]
