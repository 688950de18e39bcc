"""Per-scene optimisation baseline (`jwmsim fit-scene LOG`): classic 3DGS on a log's training views.

This is the reference WorldRec must beat in time-to-quality, so it is tuned reasonably and measured
honestly:

* training views: the log's main rig, every frame; held-out views: the log's evaluation rigs (shifted
  laterally, never trained on), rendered by the oracle at log time;
* moving agents are masked out of the loss by the oracle's instance ids (instance > 0); the sky
  (infinite depth) is modelled by Gaussians initialised on a far shell;
* initialisation from the log's depth (unprojected, subsampled pixels), Adam with 3DGS's per-parameter
  learning rates (position lr decayed exponentially, scaled by the scene extent), loss
  0.8 L1 + 0.2 (1 - SSIM), densification (clone / split) by accumulated positional gradient and pruning
  of transparent or huge Gaussians;
* every `eval_every_s` seconds of training wall time (evaluation time excluded) the held-out PSNR/SSIM
  is measured on static pixels and on all pixels; the curve is written as JSON;
* checkpoints (scene + Adam moments + curve, safetensors/JSON) every `checkpoint_every_s`; `resume=true`
  continues from the last one.

Densification criterion: 3DGS accumulates the norm of the gradient w.r.t. the 2D projected mean. The
backend-independent `rasterize()` does not expose 2D means, so we use the equivalent first-order
quantity ``|dL/dmu_3d| * z / f`` (the 3D gradient scaled to pixels by the depth over the focal length),
with 3DGS's threshold 2e-4 rescaled by the same factor.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jwmsim import geometry
from jwmsim.conf.structured import FitConfig  # noqa: F401 - defined with the other structured configs
from jwmsim.splat.rasterize import camera_matrices, rasterize
from jwmsim.splat.scene import GaussianScene, rgb_to_sh0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- data


@dataclass
class Views:
    """Camera views of one rig over a log. images [V, 3 cams, H, W, 3] float [0,1]; static [V, C, H, W] bool;
    Ks [V, C, 3, 3]; world_to_cams [V, C, 4, 4]; depth [V, C, H, W] m (inf sky) or None."""

    images: torch.Tensor
    static: torch.Tensor
    Ks: torch.Tensor
    world_to_cams: torch.Tensor
    depth: torch.Tensor | None
    width: int
    height: int


def load_views(log, rig: str = "main", frames: list[int] | None = None) -> Views:
    """Images, static-pixel masks and cameras of `rig` at `frames` (all frames by default)."""
    if log.frames is None:
        raise ValueError("fit-scene needs a log with camera frames; this one is state-only")
    cams = log.rig if rig == "main" else log.eval_rigs[rig]
    src = log.frames if rig == "main" else log.frames.rig(rig)
    frames = list(range(log.num_frames)) if frames is None else frames
    imgs, static, ks, w2cs, depths = [], [], [], [], []
    for t in frames:
        f = src[t]
        imgs.append(torch.from_numpy(f.images).float() / 255.0)
        inst = f.instance if f.instance is not None else np.zeros(f.images.shape[:3], np.int32)
        static.append(torch.from_numpy(inst == 0))
        if f.depth is not None:
            depths.append(torch.from_numpy(f.depth.astype(np.float32)))
        K, w2c, width, height = camera_matrices(cams, log.ego.ego_to_world[t], dtype=torch.float32)
        ks.append(K)
        w2cs.append(w2c)
    return Views(torch.stack(imgs), torch.stack(static), torch.stack(ks), torch.stack(w2cs),
                 torch.stack(depths) if len(depths) == len(frames) else None, width, height)


def init_from_depth(views: Views, cfg: FitConfig, rng: np.random.Generator) -> tuple[GaussianScene, float]:
    """Gaussians at unprojected static pixels (colour from the pixel, scale from the 3 nearest neighbours).

    Returns the scene and the scene extent [m] (radius of the camera centres' bounding sphere, at
    least 10 m), which scales the position learning rate as in 3DGS.
    """
    if views.depth is None:
        raise ValueError("the log has no depth; regenerate it with with_depth=true (init from depth needs it)")
    V, C, H, W = views.depth.shape
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    uv = torch.stack([u, v], -1).reshape(-1, 2)
    pts, cols = [], []
    for i in range(V):
        for c in range(C):
            d = views.depth[i, c].reshape(-1).clone()
            ok = views.static[i, c].reshape(-1)
            sky = ~torch.isfinite(d) | (d > cfg.max_init_depth)
            # Sky pixels: unproject to a fixed far range along the ray (camera z of that range).
            ray = torch.stack([(uv[:, 0] - views.Ks[i, c, 0, 2]) / views.Ks[i, c, 0, 0],
                               (uv[:, 1] - views.Ks[i, c, 1, 2]) / views.Ks[i, c, 1, 1]], -1)
            d[sky] = cfg.sky_radius / torch.sqrt(1 + (ray[sky] ** 2).sum(-1))
            c2w = torch.linalg.inv(views.world_to_cams[i, c].double()).float()
            p = geometry.unproject_pixels(views.Ks[i, c], c2w, uv, d)
            pts.append(p[ok])
            cols.append(views.images[i, c].reshape(-1, 3)[ok])
    pts, cols = torch.cat(pts), torch.cat(cols)
    n = min(cfg.init_points, len(pts))
    idx = torch.from_numpy(rng.choice(len(pts), size=n, replace=False))
    pts, cols = pts[idx], cols[idx]
    # 3DGS: isotropic scale = RMS distance to the 3 nearest neighbours of the initial point cloud.
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts.double().numpy()).query(pts.double().numpy(), k=4)
    s = torch.from_numpy(np.sqrt((d[:, 1:] ** 2).mean(axis=1))).float().clamp(1e-3, 10.0)
    scene = GaussianScene.from_params(pts, scales=s[:, None].expand(n, 3).contiguous(),
                                      opacities=torch.full((n,), cfg.init_opacity), rgb=cols.clamp(0.02, 0.98))
    centres = torch.linalg.inv(views.world_to_cams.reshape(-1, 4, 4).double())[:, :3, 3]
    extent = float(max((centres - centres.mean(0)).norm(dim=-1).max() * 1.1, 10.0))
    return scene, extent


# ----------------------------------------------------------------------------- optimisation


PARAMS = ("means", "quats", "log_scales", "opacity_logits", "colors")


class Optimizer:
    """Adam over the scene's float parameters with per-parameter learning rates, and the bookkeeping that
    densification needs (moments are cloned / dropped with their Gaussians)."""

    def __init__(self, scene: GaussianScene, cfg: FitConfig, extent: float):
        self.cfg, self.extent = cfg, extent
        self.params = {k: getattr(scene, k).detach().clone().requires_grad_(True) for k in PARAMS}
        self.labels = {k: getattr(scene, k) for k in ("instance_id", "semantic", "dynamic")}
        self.lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats, "log_scales": cfg.lr_scales,
                    "opacity_logits": cfg.lr_opacity, "colors": cfg.lr_colors}
        self.m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.step_count = 0
        n = len(self.params["means"])
        self.grad_accum = torch.zeros(n, device=self.params["means"].device)
        self.grad_count = torch.zeros(n, device=self.params["means"].device)

    def scene(self) -> GaussianScene:
        return GaussianScene(**self.params, **self.labels)

    def means_lr(self, it: int) -> float:
        # 3DGS: log-linear decay from lr_means to lr_means_final over the run.
        t = min(it / max(self.cfg.max_iters, 1), 1.0)
        return math.exp((1 - t) * math.log(self.cfg.lr_means) + t * math.log(self.cfg.lr_means_final)) * self.extent

    @torch.no_grad()
    def step(self, it: int, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-15) -> None:
        self.step_count += 1
        self.lrs["means"] = self.means_lr(it)
        for k, p in self.params.items():
            if p.grad is None:
                continue
            g = p.grad
            self.m[k].mul_(b1).add_(g, alpha=1 - b1)
            self.v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
            mh = self.m[k] / (1 - b1 ** self.step_count)
            vh = self.v[k] / (1 - b2 ** self.step_count)
            p.sub_(self.lrs[k] * mh / (vh.sqrt() + eps))
            p.grad = None

    @torch.no_grad()
    def _edit(self, keep: torch.Tensor, new: dict[str, torch.Tensor] | None = None) -> None:
        """Keep Gaussians `keep` [N] bool and append `new` (fresh Adam moments for them)."""
        n_new = 0 if new is None else len(new["means"])
        for k in PARAMS:
            parts = [self.params[k][keep]] + ([new[k]] if new else [])
            self.params[k] = torch.cat(parts).contiguous().requires_grad_(True)
            z = torch.zeros((n_new, *self.m[k].shape[1:]), device=self.m[k].device)
            self.m[k] = torch.cat([self.m[k][keep], z])
            self.v[k] = torch.cat([self.v[k][keep], z])
        for k, lab in self.labels.items():
            extra = torch.zeros((n_new,), dtype=lab.dtype, device=lab.device)
            self.labels[k] = torch.cat([lab[keep], extra])
        n = len(self.params["means"])
        self.grad_accum = torch.zeros(n, device=self.grad_accum.device)
        self.grad_count = torch.zeros(n, device=self.grad_accum.device)

    @torch.no_grad()
    def accumulate(self, pix_grad: torch.Tensor, visible: torch.Tensor) -> None:
        self.grad_accum += pix_grad * visible
        self.grad_count += visible.float()

    @torch.no_grad()
    def densify_and_prune(self, rng: torch.Generator) -> dict:
        p = self.params
        avg = self.grad_accum / self.grad_count.clamp_min(1)
        big = avg >= self.cfg.grad_threshold
        max_scale = p["log_scales"].exp().max(dim=-1).values
        small = max_scale <= self.cfg.percent_dense * self.extent
        clone, split = big & small, big & ~small
        budget = self.cfg.max_gaussians - len(avg)
        if budget <= 0:
            clone[:] = False
            split[:] = False
        elif int(clone.sum() + split.sum()) > budget:
            # Keep the strongest gradients inside the budget.
            order = torch.argsort(avg, descending=True)
            allowed = torch.zeros_like(big)
            allowed[order[:budget]] = True
            clone &= allowed
            split &= allowed
        new: dict[str, list[torch.Tensor]] = {k: [] for k in PARAMS}
        if clone.any():
            for k in PARAMS:
                new[k].append(p[k][clone].detach())
        if split.any():
            # Two samples from each split Gaussian, scales / 1.6 (3DGS).
            s = p["log_scales"][split].exp()
            rot = geometry.quat_to_rotmat(p["quats"][split])
            for _ in range(2):
                z = torch.randn(s.shape, generator=rng, device=s.device) * s
                new["means"].append(p["means"][split] + (rot @ z[..., None])[..., 0])
                new["log_scales"].append(torch.log(s / 1.6))
                for k in ("quats", "opacity_logits", "colors"):
                    new[k].append(p[k][split].detach())
        opac = torch.sigmoid(p["opacity_logits"])
        prune = (opac < self.cfg.prune_opacity) | (max_scale > self.cfg.prune_scale * self.extent) | split
        keep = ~prune
        merged = {k: torch.cat(v) for k, v in new.items()} if any(len(v) for v in new.values()) else None
        before = len(keep)
        self._edit(keep, merged)
        return {"cloned": int(clone.sum()), "split": int(split.sum()),
                "pruned": int(prune.sum() - split.sum()), "before": before, "after": len(self.params["means"])}

    @torch.no_grad()
    def reset_opacity(self) -> None:
        cap = torch.logit(torch.tensor(0.01))
        self.params["opacity_logits"].clamp_(max=float(cap))
        self.m["opacity_logits"].zero_()
        self.v["opacity_logits"].zero_()

    # -- checkpoint ----------------------------------------------------------------------------

    def state(self) -> dict[str, torch.Tensor]:
        out = {}
        for k in PARAMS:
            out[f"param.{k}"] = self.params[k].detach().contiguous()
            out[f"adam_m.{k}"] = self.m[k].contiguous()
            out[f"adam_v.{k}"] = self.v[k].contiguous()
        for k, lab in self.labels.items():
            out[f"label.{k}"] = lab.contiguous()
        return out

    def load_state(self, state: dict[str, torch.Tensor], step_count: int) -> None:
        for k in PARAMS:
            self.params[k] = state[f"param.{k}"].clone().requires_grad_(True)
            self.m[k] = state[f"adam_m.{k}"].clone()
            self.v[k] = state[f"adam_v.{k}"].clone()
        for k in self.labels:
            self.labels[k] = state[f"label.{k}"].clone()
        self.step_count = step_count
        n = len(self.params["means"])
        self.grad_accum = torch.zeros(n)
        self.grad_count = torch.zeros(n)


def masked_l1_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """0.8 L1 + 0.2 (1 - SSIM) over masked pixels. pred/target [C, H, W, 3], mask [C, H, W] bool."""
    from pytorch_msssim import ssim

    m = mask[..., None].float()
    l1 = ((pred - target).abs() * m).sum() / (m.sum() * 3).clamp_min(1)
    if ssim_weight <= 0:
        return l1
    # SSIM on images where the masked pixels are replaced by the target: they then contribute perfect
    # structure and no gradient, so agents do not pull the static scene.
    p = torch.where(mask[..., None], pred, target).permute(0, 3, 1, 2)
    s = ssim(p, target.permute(0, 3, 1, 2), data_range=1.0, size_average=True)
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - s)


@torch.no_grad()
def evaluate(scene: GaussianScene, views: dict[str, Views]) -> dict:
    """Held-out PSNR / SSIM on static pixels and on all pixels, averaged over rigs and frames."""
    from jwmsim.image_metrics import masked_psnr, psnr, ssim

    res: dict[str, list[float]] = {"psnr_static": [], "psnr_all": [], "ssim_all": []}
    for v in views.values():
        for i in range(len(v.images)):
            out = rasterize(scene, Ks=v.Ks[i], world_to_cams=v.world_to_cams[i], width=v.width, height=v.height)
            pred = out.rgb.clamp(0, 1).cpu().permute(0, 3, 1, 2)  # models' layout [C, 3, H, W]
            tgt = v.images[i].permute(0, 3, 1, 2)
            res["psnr_all"] += psnr(pred, tgt).tolist()
            res["psnr_static"] += masked_psnr(pred, tgt, v.static[i]).tolist()
            res["ssim_all"] += ssim(pred, tgt).tolist()
    return {k: float(np.mean(x)) for k, x in res.items()}


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _read_checkpoint(ckpt: Path, ckpt_meta: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint's JSON and tensors, or a ValueError naming the broken file and the way out."""
    from safetensors.torch import load_file

    fix = f"delete {ckpt} and {ckpt_meta} to start afresh, or run without resume"
    try:
        meta = json.loads(ckpt_meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{ckpt_meta}: not valid JSON ({e}); {fix}") from None
    need = {"iter": int, "train_seconds": (int, float), "curve": list, "extent": (int, float), "adam_step": int}
    bad = [k for k, t in need.items() if not isinstance(meta, dict) or isinstance(meta.get(k), bool)
           or not isinstance(meta.get(k), t)]
    if bad:
        raise ValueError(f"{ckpt_meta}: missing or malformed {', '.join(bad)}; {fix}")
    if ckpt.stat().st_size == 0:
        raise ValueError(f"{ckpt} is empty; {fix}")
    try:
        state = load_file(os.fspath(ckpt))
    except Exception as e:  # noqa: BLE001 - safetensors' SafetensorError has no stable import path
        raise ValueError(f"{ckpt}: not a readable safetensors checkpoint ({e}); {fix}") from None
    return meta, state


def fit_scene(log_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: FitConfig | None = None,
              resume: bool = False, progress: bool = True) -> dict:
    """Fit a static Gaussian scene to a log's training views; returns the final summary.

    Writes to out_dir: ``curve.json`` (held-out PSNR/SSIM vs training wall time), ``scene.safetensors``
    (the final GaussianScene), ``checkpoint.safetensors`` + ``checkpoint.json`` (resume), ``summary.json``.
    CLI: `jwmsim fit-scene LOG out=DIR max_minutes=... resume=true`.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    from jwmsim.log import read_log

    cfg = cfg or FitConfig()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = read_log(log_dir)
    if not log.eval_rigs:
        raise ValueError(f"{log_dir} has no evaluation rigs; make the log with eval_shifts to measure held-out quality")
    train = load_views(log)
    eval_idx = np.unique(np.linspace(0, log.num_frames - 1, cfg.eval_frames).round().astype(int)).tolist()
    held_out = {name: load_views(log, name, eval_idx) for name in log.eval_rigs}
    train_eval = load_views(log, "main", eval_idx)
    rng = np.random.default_rng(cfg.seed)
    trng = torch.Generator().manual_seed(cfg.seed)

    ckpt, ckpt_meta = out / "checkpoint.safetensors", out / "checkpoint.json"
    if resume and ckpt.is_file() and ckpt_meta.is_file():
        meta, state = _read_checkpoint(ckpt, ckpt_meta)
        opt = Optimizer(GaussianScene.empty(), cfg, meta["extent"])
        try:
            opt.load_state(state, meta["adam_step"])
        except KeyError as e:
            raise ValueError(f"{ckpt}: tensor {e} missing; the checkpoint is from another jwmsim version or "
                             f"corrupt — delete {ckpt} and {ckpt_meta} to start afresh") from None
        it0, train_time, curve = meta["iter"], meta["train_seconds"], meta["curve"]
        rng = np.random.default_rng([cfg.seed, it0])
    else:
        scene0, extent = init_from_depth(train, cfg, rng)
        opt = Optimizer(scene0, cfg, extent)
        it0, train_time, curve = 0, 0.0, []
    for k in PARAMS:
        opt.params[k] = opt.params[k].detach().to(device).requires_grad_(True)
    train_images = train.images.to(device)
    static = train.static.to(device)
    Ks, w2cs = train.Ks.to(device), train.world_to_cams.to(device)
    fx = Ks[..., 0, 0].mean()

    def record(it: int) -> dict:
        scene = opt.scene().detach()
        m = evaluate(scene, held_out)
        # The same frames seen from the training rig: the gap to held-out is what extrapolation costs.
        m["psnr_train_static"] = evaluate(scene, {"main": train_eval})["psnr_static"]
        row = {"iter": it, "train_seconds": round(train_time, 2), "gaussians": len(opt.params["means"]), **m}
        curve.append(row)
        _atomic_json(out / "curve.json", {"log": str(log_dir), "config": asdict(cfg), "curve": curve})
        return row

    def checkpoint(it: int) -> None:
        tmp = out / "checkpoint.safetensors.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in opt.state().items()}, str(tmp))
        os.replace(tmp, ckpt)
        _atomic_json(ckpt_meta, {"iter": it, "train_seconds": train_time, "curve": curve, "extent": opt.extent,
                                 "adam_step": opt.step_count})

    if not curve:
        record(it0)
    last_eval = last_ckpt = train_time
    bar = tqdm(total=cfg.max_iters, initial=it0, disable=not progress, desc="fit-scene", unit="it")
    it = it0
    stop_reason = "max_iters"
    while it < cfg.max_iters:
        t0 = time.perf_counter()
        i = int(rng.integers(len(train_images)))
        scene = opt.scene()
        outr = rasterize(scene, Ks=Ks[i], world_to_cams=w2cs[i], width=train.width, height=train.height)
        loss = masked_l1_ssim(outr.rgb, train_images[i], static[i], cfg.ssim_weight)
        loss.backward()
        it += 1
        with torch.no_grad():
            if it < cfg.densify_until:
                visible = (outr.radii.amax(dim=-1) > 0).any(dim=0)  # [N]
                rig_centre = torch.linalg.inv(w2cs[i])[:, :3, 3].mean(0)
                z = (opt.params["means"] - rig_centre).norm(dim=-1)
                # |dL/dmu| * z / f approximates |dL/d mean2d| in pixels; x W/2 gives 3DGS's NDC units.
                pix = opt.params["means"].grad.norm(dim=-1) * z / fx * (train.width / 2.0)
                opt.accumulate(pix, visible)
        opt.step(it)
        if cfg.densify_from <= it < cfg.densify_until and it % cfg.densify_every == 0:
            opt.densify_and_prune(trng)
        if cfg.opacity_reset_every and it % cfg.opacity_reset_every == 0 and it < cfg.densify_until:
            opt.reset_opacity()
        train_time += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", n=len(opt.params["means"]),
                        psnr=f"{curve[-1]['psnr_static']:.2f}" if curve else "-")
        if train_time - last_eval >= cfg.eval_every_s:
            record(it)
            last_eval = train_time
            w = cfg.converge_window
            if len(curve) > w and curve[-1]["psnr_static"] - curve[-1 - w]["psnr_static"] < cfg.converge_db \
                    and it > cfg.densify_until:
                stop_reason = "converged"
                break
        if train_time - last_ckpt >= cfg.checkpoint_every_s:
            checkpoint(it)
            last_ckpt = train_time
        if train_time >= cfg.max_minutes * 60:
            stop_reason = "time_budget"
            break
    bar.close()
    if curve[-1]["iter"] != it:
        record(it)
    checkpoint(it)
    final = opt.scene().detach().to("cpu").normalize_quats()
    final.save(out / "scene.safetensors", extra_metadata={"log": str(log_dir), "iter": str(it)})
    summary = {"log": str(log_dir), "iters": it, "train_seconds": round(train_time, 1), "stop": stop_reason,
               "gaussians": len(final), "final": curve[-1], "device": str(device)}
    _atomic_json(out / "summary.json", summary)
    return summary
