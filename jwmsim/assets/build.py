"""Building the asset library (``jwmsim assets build``): Gaussians fitted to the oracle's renders of each
agent kind, alone.

What is done, per kind (a preset of :data:`jwmsim.inject.AGENT_PRESETS`: its oracle mesh and its box):

1. **Views.** The oracle (:class:`jwmsim.town.oracle.OracleRenderer` with an EMPTY static mesh, so the agent
   is the only geometry) renders the agent from a ring of cameras around its box: azimuths all round,
   elevations 2-40 deg, distances 1.1-1.8x the distance at which the box's bounding sphere fills the view,
   square images of ``size`` px with a 50 deg field of view. The instance image gives the agent's mask.
   Each view gives the agent a random yaw under a sun 25-65 deg high (the town's range), so the fit sees
   the sun from every side and can learn colours linear in the sun's direction in the box frame (the
   relighting terms of :mod:`jwmsim.assets`; ``relight=False`` keeps only the average over the sun).
   Views cycle through four track ids whose town paints are white, black, blue and orange, so the fit can
   separate the paint-dependent colour (see :mod:`jwmsim.assets`). Every ``heldout_every``-th view (at
   azimuths between the training ones) is held out.
2. **Fit.** N Gaussians initialised on the mesh surface (area-weighted samples, scaled to the box), then
   Adam (each view rendered with its own paint and sun) on L1(RGB over black, oracle RGB x mask) + ``alpha_weight`` x L1(alpha, mask) with the project's
   rasterizer (:func:`jwmsim.splat.rasterize.rasterize`): the alpha term against the instance mask leaves
   no haze outside the agent. Means are kept inside the box (+ ``margin`` per side) and scales below a
   quarter of the box's smallest side after every step. No densification: the count stays N.
3. **Measure and write.** Held-out PSNR inside the oracle's mask and alpha IoU; fp16 tensors in
   ``<kind>.safetensors`` (written to a temporary name, then renamed: never a half file) and the entry in
   ``index.json`` (rewritten atomically after each kind).

The second source, ``source=worldrec`` (:func:`reconstruct_kind`): agents reconstructed by WorldRec from town
logs. Each of a few train logs is reconstructed one shot (:class:`jwmsim.worldrec.fusion.World`); among the
logged tracks of the kind's class whose box is within 25 % of the preset's, the one holding the most
Gaussians is taken, its box-frame Gaussians become the asset (its observed colour as ``rgb``, no paint or
sun terms: the paint of that track and the light of its log are baked in). It is measured on the same kind
of held-out oracle views, painted like the source track, beside the oracle-fitted asset on those very views
(``heldout_oracle_fit``), so the index says which source is better. Only kinds a log contains can come from
WorldRec (cars; the town logs no trucks, buses or animals).
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from jwmsim.assets import ASSET_FORMAT, FIELDS, INDEX_FORMAT, VERSION

# Kinds built by default: every injectable preset the oracle draws at its own shape/box (vehicle is car).
DEFAULT_KINDS = ("car", "truck", "bus", "pedestrian", "cyclist", "animal", "horse", "deer", "dog", "object")
ALIASES = {"vehicle": "car"}
PAINT_INDICES = (0, 1, 5, 9)  # white, black, blue, orange in jwmsim.town.mesh.AGENT_PAINTS
SUN_ELEVATIONS_DEG = np.array([25.0, 35.0, 45.0, 55.0, 65.0])


def paint_ids(indices: Sequence[int] = PAINT_INDICES, start: int = 1_000_000) -> list[int]:
    """The first track ids >= start whose town paint is AGENT_PAINTS[i] for each i of ``indices``."""
    from jwmsim.town.mesh import AGENT_PAINTS, agent_paint

    out = []
    for i in indices:
        tid = start
        while not np.allclose(agent_paint([tid])[0], AGENT_PAINTS[i]):
            tid += 1
        out.append(tid)
    return out


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """world_to_cam [4, 4] (OpenCV axes) of a camera at eye [3] looking at target [3], z up."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r = r / np.linalg.norm(r)
    d = np.cross(f, r)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r, d, f], 1)
    c2w[:3, 3] = eye
    return np.linalg.inv(c2w)


def render_views(kind: str, box: Sequence[float] | None = None, views: int = 50, size: int = 64,
                 heldout_every: int = 5, seed: int = 0, random_yaw: bool = True,
                 track_ids: Sequence[int] | None = None) -> dict:
    """The oracle's views of ``kind`` alone (module docstring, step 1). track_ids: the track ids (so the
    paints) the views cycle through (default :func:`paint_ids`).

    Returns K [3, 3] px; box_to_cam [V, 4, 4]; rgb [V, H, W, 3] float32 in [0, 1]; mask [V, H, W] bool (the
    agent's instance pixels); paint [V, 3] the town paint of each view's track id; heldout [V] bool; box [3] m.
    """
    from jwmsim.geometry import intrinsics_from_hfov, se3_from_xyz_yaw
    from jwmsim.inject import AGENT_PRESETS
    from jwmsim.town.mesh import Mesh, agent_paint
    from jwmsim.town.oracle import Lighting, OracleRenderer
    from jwmsim.datatypes import AGENT_TYPES

    if kind not in AGENT_PRESETS:
        raise ValueError(f"unknown asset kind {kind!r}; valid kinds: {', '.join(AGENT_PRESETS)}")
    p = AGENT_PRESETS[kind]
    box = np.asarray(box if box is not None else (p.length, p.width, p.height), np.float64)
    rng = np.random.default_rng(seed)
    hfov = math.radians(50.0)
    K = intrinsics_from_hfov(size, size, hfov)
    radius = 0.5 * float(np.linalg.norm(box))
    sun_el = rng.choice(SUN_ELEVATIONS_DEG, views)  # the town's sun is 25-65 deg high (jwmsim.town.layout)
    ids = list(track_ids) if track_ids is not None else paint_ids()
    heldout = np.arange(views) % heldout_every == heldout_every - 1
    # azimuths: golden-angle spiral so that every subset covers the circle; held-out views fall between
    az = (np.arange(views) * 2.399963 + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
    el = np.radians(rng.uniform(2.0, 40.0, views))
    dist = radius / math.sin(hfov / 2) * rng.uniform(1.1, 1.8, views)
    yaw = rng.uniform(-np.pi, np.pi, views)  # the agent's yaw under the fixed sun
    if not random_yaw:  # one sun direction in the box frame (a diagnostic)
        yaw[:] = 0.0
        sun_el[:] = SUN_ELEVATIONS_DEG[len(SUN_ELEVATIONS_DEG) // 2]
    track = np.array([ids[i % len(ids)] for i in range(views)])
    aim = rng.normal(0.0, 0.05, (views, 3)) * box  # small jitter of the aim point
    b2c = np.zeros((views, 4, 4))
    w2c = np.zeros((views, 4, 4))
    centre = np.array([0.0, 0.0, box[2] / 2.0])
    for v in range(views):
        eye = np.array([math.cos(el[v]) * math.cos(az[v]), math.cos(el[v]) * math.sin(az[v]), math.sin(el[v])]) * dist[v]
        b2c[v] = _look_at(eye, aim[v])
        w2b = np.linalg.inv(se3_from_xyz_yaw(centre, yaw[v]))
        w2c[v] = b2c[v] @ w2b
    rgb = np.zeros((views, size, size, 3), np.float32)
    mask = np.zeros((views, size, size), bool)
    sun_box = np.zeros((views, 3))
    for el_deg in np.unique(sun_el):
        e = math.radians(float(el_deg))
        sun = np.array([math.cos(e), 0.0, math.sin(e)])
        with OracleRenderer(Mesh.empty(), width=size, height=size, lighting=Lighting(sun_direction=tuple(sun))) as oracle:
            for v in np.flatnonzero(sun_el == el_deg):
                agents = (np.array([track[v]]), np.array([AGENT_TYPES[p.code]]), centre[None], np.array([yaw[v]]),
                          box[None])
                out = oracle.render_views(K, w2c[v], agents, width=size, height=size)
                rgb[v] = out["rgb"][0].astype(np.float32) / 255.0
                mask[v] = out["instance"][0] == track[v] + 1
                c, s_ = math.cos(yaw[v]), math.sin(yaw[v])
                sun_box[v] = [c * sun[0] + s_ * sun[1], -s_ * sun[0] + c * sun[1], sun[2]]  # Rz(-yaw) sun
    return {"K": K, "box_to_cam": b2c, "rgb": rgb, "mask": mask, "paint": agent_paint(track), "heldout": heldout,
            "box": box, "track": track, "sun_box": sun_box}


def _init(kind: str, box: np.ndarray, n: int, rng: np.random.Generator) -> dict:
    """n Gaussians on the kind's oracle mesh surface (area-weighted), in the box frame [m]."""
    import torch

    from jwmsim.datatypes import AGENT_TYPES
    from jwmsim.inject import AGENT_PRESETS
    from jwmsim.town.mesh import AGENT_PAINT, default_agent_meshes

    mesh = default_agent_meshes()[AGENT_TYPES[AGENT_PRESETS[kind].code]]
    pos = mesh.positions.astype(np.float64) * box
    tri = pos[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = rng.choice(len(area), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    pts = tri[f, 0] + u[:, None] * (tri[f, 1] - tri[f, 0]) + v[:, None] * (tri[f, 2] - tri[f, 0])
    col = mesh.colors[mesh.faces[f, 0]].astype(np.float64)
    painted = (mesh.material[mesh.faces[f, 0]] == AGENT_PAINT)[:, None]
    s = math.sqrt(area.sum() / n) * 0.6
    T = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return {"means": T(pts), "log_scales": T(np.full((n, 3), math.log(s))),
            "quats": T(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))), "opacity_logits": T(np.full(n, 2.0)),
            "rgb": T(np.where(painted, 0.05, 0.5 * col)), "paint": T(np.where(painted, 0.6 * col, 0.0)),
            "rgb_sun": T(np.zeros((n, 3, 3))), "paint_sun": T(np.zeros((n, 3, 3)))}


def _render(params: dict, paint, sun_box, K, b2c, size: int):
    from jwmsim.assets import colours
    from jwmsim.splat.rasterize import rasterize
    from jwmsim.splat.scene import GaussianScene, rgb_to_sh0
    import torch

    n = params["means"].shape[0]
    rgb = colours(params, paint, sun_box)
    scene = GaussianScene(means=params["means"], quats=params["quats"], log_scales=params["log_scales"],
                          opacity_logits=params["opacity_logits"], colors=rgb_to_sh0(rgb)[:, None, :],
                          instance_id=torch.zeros(n, dtype=torch.int32), semantic=torch.zeros(n, dtype=torch.int32),
                          dynamic=torch.zeros(n, dtype=torch.bool))
    Ks = torch.as_tensor(np.broadcast_to(K, (len(b2c), 3, 3)).copy(), dtype=torch.float32)
    r = rasterize(scene, Ks=Ks, world_to_cams=torch.as_tensor(b2c, dtype=torch.float32), width=size, height=size,
                  background=(0.0, 0.0, 0.0), backend="cpu")
    return r.rgb, r.alpha.reshape(r.rgb.shape[:3])


def evaluate(params: dict, data: dict, sel: np.ndarray) -> dict:
    """PSNR [dB] inside the oracle's mask (render over black vs the oracle's RGB) and alpha IoU (alpha > 0.5
    vs the mask) over views ``sel`` [V] bool, each view rendered with its own paint."""
    import torch

    size = data["rgb"].shape[1]
    se, cnt, inter, union = 0.0, 0, 0, 0
    with torch.no_grad():
        for v in np.flatnonzero(sel):
            rgb, alpha = _render(params, torch.as_tensor(data["paint"][v]), data["sun_box"][v], data["K"],
                                 data["box_to_cam"][v:v + 1], size)
            m = torch.as_tensor(data["mask"][v])
            tgt = torch.as_tensor(data["rgb"][v])
            se += float(((rgb[0].clamp(0, 1) - tgt) ** 2)[m].sum())
            cnt += int(m.sum()) * 3
            a = alpha[0] > 0.5
            inter += int((a & m).sum())
            union += int((a | m).sum())
    mse = se / max(cnt, 1)
    return {"psnr_mask": round(10 * math.log10(1.0 / max(mse, 1e-12)), 3), "alpha_iou": round(inter / max(union, 1), 4),
            "views": int(sel.sum())}


def fit_kind(kind: str, gaussians: int = 2000, iters: int = 300, views: int = 50, size: int = 64, batch: int = 4,
             alpha_weight: float = 1.0, margin: float = 0.03, seed: int = 0, random_yaw: bool = True,
             relight: bool = True, progress=None) -> tuple[dict, dict]:
    """Fit one kind (module docstring). Returns (tensors float32 in the box frame, report dict with the
    held-out figures, the box and the settings)."""
    import torch

    t0 = time.perf_counter()
    data = render_views(kind, views=views, size=size, seed=seed, random_yaw=random_yaw)
    t_render = time.perf_counter() - t0
    box = data["box"]
    rng = np.random.default_rng(seed + 1)
    params = {k: v.clone().requires_grad_(True) for k, v in _init(kind, box, gaussians, rng).items()}
    lr = {"means": 2e-3 * float(np.linalg.norm(box)), "log_scales": 1e-2, "quats": 2e-3, "opacity_logits": 5e-2,
          "rgb": 1e-2, "paint": 1e-2, "rgb_sun": 1e-2, "paint_sun": 1e-2}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr[k]} for k in FIELDS], eps=1e-15)
    train = np.flatnonzero(~data["heldout"])
    lo = torch.as_tensor(-box / 2 - margin * box, dtype=torch.float32)
    hi = torch.as_tensor(box / 2 + margin * box, dtype=torch.float32)
    max_log_scale = math.log(0.25 * float(box.min()))
    rgb_t, mask_t = torch.as_tensor(data["rgb"]), torch.as_tensor(data["mask"], dtype=torch.float32)
    gen = np.random.default_rng(seed + 2)
    loss_v = float("nan")
    for it in range(iters):
        loss = 0.0
        for v in gen.choice(train, min(batch, len(train)), replace=False):  # each view: its own paint and sun
            rgb, alpha = _render(params, torch.as_tensor(data["paint"][v]), data["sun_box"][v], data["K"],
                                 data["box_to_cam"][v:v + 1], size)
            m = mask_t[v:v + 1]
            loss = loss + ((rgb - rgb_t[v:v + 1] * m[..., None]).abs().mean()
                           + alpha_weight * (alpha - m).abs().mean()) / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep the asset in its box and its Gaussians small
            params["means"].data = torch.maximum(torch.minimum(params["means"], hi), lo)
            params["log_scales"].clamp_(max=max_log_scale)
            params["rgb"].clamp_(-0.2, 1.2)
            params["paint"].clamp_(-0.5, 1.5)
            if not relight:
                params["rgb_sun"].zero_()
                params["paint_sun"].zero_()
        loss_v = float(loss.detach())
        if progress is not None and (it % 50 == 0 or it == iters - 1):
            progress(f"{kind}: iter {it + 1}/{iters} loss {loss_v:.4f}")
    out = {k: v.detach().clone() for k, v in params.items()}
    out["quats"] = torch.nn.functional.normalize(out["quats"], dim=-1)
    report = {"box": [round(float(b), 4) for b in box], "gaussians": gaussians,
              "heldout": evaluate(out, data, data["heldout"]), "train": evaluate(out, data, ~data["heldout"]),
              "final_loss": round(loss_v, 5), "render_seconds": round(t_render, 2),
              "seconds": round(time.perf_counter() - t0, 2),
              "settings": {"gaussians": gaussians, "iters": iters, "views": views, "size": size, "batch": batch,
                           "alpha_weight": alpha_weight, "margin": margin, "seed": seed, "relight": relight,
                           "sun_elevations_deg": SUN_ELEVATIONS_DEG.tolist(), "paint_track_ids": paint_ids()}}
    return out, report


def reconstruct_kind(kind: str, dataset: str | Path, logs: int = 4, weights: str | Path | None = None,
                     views: int = 50, size: int = 64, seed: int = 0, library: str | Path | None = None,
                     progress=None) -> tuple[dict, dict]:
    """An asset of ``kind`` from WorldRec reconstructions of the first ``logs`` train logs of the town dataset
    ``dataset`` (module docstring, second source). library: the oracle-fitted library to compare with on the
    same held-out views (default the shipped one; skipped when it lacks the kind). Returns (tensors in the
    box frame, report)."""
    import torch

    from jwmsim.assets import FIELDS, AssetLibrary
    from jwmsim.datatypes import AGENT_TYPES
    from jwmsim.inject import AGENT_PRESETS
    from jwmsim.log import read_log
    from jwmsim.town.dataset import log_dir_name
    from jwmsim.worldgen.data import split_seeds
    from jwmsim.worldrec.fusion import World, load_model

    if kind not in AGENT_PRESETS:
        raise ValueError(f"unknown asset kind {kind!r}; valid kinds: {', '.join(AGENT_PRESETS)}")
    preset = AGENT_PRESETS[kind]
    want = np.array([preset.length, preset.width, preset.height])
    seeds = split_seeds(dataset, "train")[: int(logs)]
    if not seeds:
        raise ValueError(f"{dataset}: no train logs to reconstruct {kind} from; make them with `jwmsim town dataset`")
    if weights is None:
        from jwmsim.sensors.gaussian import default_worldrec_weights

        weights = default_worldrec_weights()
    model = load_model(weights, "cpu")
    t0 = time.perf_counter()
    best = None  # (count, seed, track id, box, gaussians)
    for s in seeds:
        log = read_log(Path(dataset) / "train" / log_dir_name(s))
        world = World(model, window=4)
        world.build_one_shot(log, list(range(0, log.num_frames, 3)))
        g = world.gaussians()
        tr = log.agents
        for a in range(tr.num_agents):
            if AGENT_TYPES[int(tr.types[a])] != AGENT_TYPES[preset.code]:
                continue
            box = np.asarray(tr.size[a], np.float64)
            if not (np.abs(box / want - 1.0) <= 0.25).all():
                continue
            sel = g["track"] == int(tr.ids[a])
            n = int(sel.sum())
            if n and (best is None or n > best[0]):
                best = (n, s, int(tr.ids[a]), box, {k: v[sel].detach().clone() for k, v in g.items() if k != "track"})
        if progress is not None:
            progress(f"{kind}: reconstructed log {log_dir_name(s)}; best track so far "
                     f"{None if best is None else (best[1], best[2], best[0])}")
    if best is None:
        raise ValueError(f"no logged {AGENT_TYPES[preset.code]} track of {kind}'s box ({want.tolist()} m, +-25 %) in "
                         f"the first {len(seeds)} train logs of {dataset}: build {kind} from the oracle (source=oracle)")
    n, s, tid, box, g = best
    z = torch.zeros(n, 3)
    tensors = {"means": g["means"].float(), "log_scales": g["log_scales"].float(), "quats": g["quats"].float(),
               "opacity_logits": g["opacity_logits"].float(), "rgb": g["rgb"].float(), "paint": z.clone(),
               "rgb_sun": torch.zeros(n, 3, 3), "paint_sun": torch.zeros(n, 3, 3)}
    tensors = {k: tensors[k] for k in FIELDS}
    data = render_views(kind, box=box, views=views, size=size, seed=seed, track_ids=[tid])
    report = {"box": [round(float(b), 4) for b in box], "gaussians": n, "source_log": log_dir_name(s),
              "source_track": tid, "heldout": evaluate(tensors, data, data["heldout"]),
              "train": evaluate(tensors, data, ~data["heldout"]), "seconds": round(time.perf_counter() - t0, 2),
              "settings": {"logs": len(seeds), "weights": str(weights), "views": views, "size": size, "seed": seed}}
    try:
        lib = AssetLibrary.load(library)
        if kind in lib.kinds:
            from jwmsim.assets import scale_gaussians

            a = lib.get(kind)
            fit = scale_gaussians({k: v.float() for k, v in a.tensors.items()}, box / a.box)
            report["heldout_oracle_fit"] = evaluate(fit, data, data["heldout"])
    except Exception as e:  # noqa: BLE001 - the comparison is a report line, not a reason to fail the build
        report["heldout_oracle_fit"] = {"error": f"{type(e).__name__}: {e}"}
    return tensors, report


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def write_asset(path: Path, tensors: dict, kind: str, box) -> None:
    """fp16 safetensors of one kind, written to a temporary name and renamed (never a half file)."""
    from safetensors.torch import save_file

    t = {k: tensors[k].detach().cpu().to(__import__("torch").float16).contiguous() for k in FIELDS}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(t, str(tmp), metadata={"format": ASSET_FORMAT, "version": str(VERSION), "kind": kind,
                                         "box": json.dumps([float(b) for b in box])})
        os.chmod(tmp, 0o644)  # package data: readable by every user of an installed jwmsim
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def build_library(out: str | Path, kinds: Sequence[str] = DEFAULT_KINDS, progress=print, source: str = "oracle",
                  dataset: str | Path | None = None, logs: int = 4, **fit) -> dict:
    """Build (or update) the library in folder ``out``: each kind of ``kinds`` is fitted (``fit``: settings
    of :func:`fit_kind`; source='oracle') or reconstructed by WorldRec from the train logs of ``dataset``
    (source='worldrec', :func:`reconstruct_kind` over ``logs`` logs) and written with its index entry;
    kinds already in an existing index are kept. Returns the index."""
    if source not in ("oracle", "worldrec"):
        raise ValueError(f"source must be 'oracle' (fit to the oracle's renders) or 'worldrec' (reconstructed from "
                         f"town logs), got {source!r}")
    if source == "worldrec" and dataset is None:
        raise ValueError("source=worldrec needs dataset= (a `jwmsim town dataset` folder with train logs)")
    from jwmsim.inject import AGENT_PRESETS

    kinds = list(kinds)
    bad = [k for k in kinds if k not in AGENT_PRESETS]
    if bad or not kinds:
        raise ValueError(f"unknown asset kinds {bad}; valid kinds: {', '.join(AGENT_PRESETS)}" if bad else
                         f"kinds is empty; give some of {', '.join(AGENT_PRESETS)}")
    kinds = [ALIASES.get(k, k) for k in kinds]
    kinds = list(dict.fromkeys(kinds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    idx_path = out / "index.json"
    index = {"format": INDEX_FORMAT, "version": VERSION, "kinds": {}, "aliases": dict(ALIASES)}
    if idx_path.is_file():
        try:
            old = json.loads(idx_path.read_text())
            if old.get("format") == INDEX_FORMAT and int(old.get("version", 0)) == VERSION:
                index["kinds"].update(old.get("kinds", {}))
        except (OSError, ValueError):
            pass  # a corrupt index is replaced
    for kind in kinds:
        utc = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if source == "worldrec":
            tensors, rep = reconstruct_kind(kind, dataset, logs=logs, views=fit.get("views", 50),
                                            size=fit.get("size", 64), seed=fit.get("seed", 0), progress=progress)
            built = {"method": "WorldRec reconstruction of a logged track (jwmsim.assets.build.reconstruct_kind)",
                     "seconds": rep["seconds"], "source_log": rep["source_log"], "source_track": rep["source_track"],
                     **rep["settings"], "utc": utc}
        else:
            tensors, rep = fit_kind(kind, progress=progress, **fit)
            built = {"method": "fit to oracle renders of the kind alone (jwmsim.assets.build)",
                     "seconds": rep["seconds"], "render_seconds": rep["render_seconds"],
                     "final_loss": rep["final_loss"], **rep["settings"], "utc": utc}
        write_asset(out / f"{kind}.safetensors", tensors, kind, rep["box"])
        index["kinds"][kind] = {
            "file": f"{kind}.safetensors", "code": int(AGENT_PRESETS[kind].code), "box": rep["box"],
            "gaussians": rep["gaussians"], "heldout": rep["heldout"], "train": rep["train"], "built": built}
        if "heldout_oracle_fit" in rep:
            index["kinds"][kind]["heldout_oracle_fit"] = rep["heldout_oracle_fit"]
        _atomic_write_json(idx_path, index)
        if progress is not None:
            h = rep["heldout"]
            progress(f"{kind}: {rep['gaussians']} Gaussians, held-out PSNR (mask) {h['psnr_mask']:.2f} dB, "
                     f"alpha IoU {h['alpha_iou']:.3f}, {rep['seconds']:.1f} s")
    return index


__all__ = ["DEFAULT_KINDS", "ALIASES", "build_library", "fit_kind", "reconstruct_kind", "render_views", "evaluate",
           "paint_ids",
           "write_asset"]
