"""WorldGen evaluation on town TEST seeds: quality against the oracle, separately where the prior had
holes and where it observed the scene, a Fréchet distance, temporal stability, a classical baseline,
time per frame, and the long rollout.

Metrics (images in [0, 1]; masks from the prior's alpha with threshold tau):
- PSNR / SSIM in filled regions (alpha < tau) and observed regions (alpha >= tau), via
  :func:`jwmsim.image_metrics.masked_psnr` / :func:`~jwmsim.image_metrics.masked_ssim`, averaged over
  the images that have such pixels.
- FD: Fréchet distance between the generated and the oracle frames' features of a FIXED encoder the
  project owns: the trained autoencoder's pooled encoder features (:meth:`.Autoencoder.features`; trained
  on train seeds only). Not comparable to FID numbers computed with Inception weights.
- Temporal stability: mean absolute error [0..1] between frame t and frame t - 1 forward-warped to
  t's pose with the ORACLE depth of t - 1 (:func:`.data.forward_warp`), over the warped pixels; the oracle
  frames' own value (moving agents, disocclusions) is the floor.
- Speed: median seconds per frame for the 3-camera rig and for one camera (the front), 2 threads unless
  told; the figure includes denoising, the KV-cache pass and decoding (or the whole inpainting).

Rows: the prior as is (holes black), OpenCV inpainting of the prior's holes (``cv2.inpaint``, Telea,
radius 3), the 50-step bidirectional teacher, and the causal student at 4 steps after teacher forcing,
after ODE distillation and after DMD (rows whose checkpoint does not exist are listed as missing).

CLI: ``jwmsim eval worldgen`` (``jwmsim/conf/cmd/eval_worldgen.yaml``); writes
``benchmarks/results/worldgen_eval.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jwmsim.image_metrics import masked_psnr, masked_ssim


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the Fréchet distance needs >= 2 samples per set, got {len(a)} and {len(b)}")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as pytorch-fid does
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def inpaint(prior: np.ndarray, alpha: np.ndarray, tau: float = 0.5, radius: int = 3) -> np.ndarray:
    """Classical baseline: OpenCV Telea inpainting of the pixels with alpha < tau.
    prior [..., H, W, 3] uint8, alpha [..., H, W] in [0, 1] -> [..., H, W, 3] uint8."""
    import cv2

    prior = np.asarray(prior)
    flat_p = prior.reshape(-1, *prior.shape[-3:])
    flat_a = np.asarray(alpha).reshape(-1, *prior.shape[-3:-1])
    out = np.empty_like(flat_p)
    for i in range(len(flat_p)):
        mask = (flat_a[i] < tau).astype(np.uint8)
        out[i] = cv2.inpaint(np.ascontiguousarray(flat_p[i]), mask, radius, cv2.INPAINT_TELEA) if mask.any() else flat_p[i]
    return out.reshape(prior.shape)


def region_metrics(pred: torch.Tensor, gt: torch.Tensor, alpha: torch.Tensor, tau: float = 0.5) -> dict:
    """Per-image masked PSNR / SSIM lists for filled (alpha < tau) and observed regions.
    pred, gt [N, 3, H, W] in [0, 1]; alpha [N, 1, H, W]."""
    filled = alpha[:, 0] < tau
    out = {}
    for name, m in (("filled", filled), ("observed", ~filled)):
        has = m.flatten(1).any(1)
        if not has.any():
            out[f"psnr_{name}"], out[f"ssim_{name}"] = [], []
            continue
        p = masked_psnr(pred[has], gt[has], m[has])
        s = masked_ssim(pred[has], gt[has], m[has])
        out[f"psnr_{name}"] = [float(x) for x in p if torch.isfinite(x)]
        out[f"ssim_{name}"] = [float(x) for x in s if torch.isfinite(x)]
    return out


def temporal_error(frames: np.ndarray, depth: np.ndarray, poses: np.ndarray, rig) -> list[float]:
    """Mean |frame_t - warp(frame_{t-1} -> t)| / 255 over warped pixels, for t = 1..F-1.
    frames [F, C, H, W, 3] uint8; depth [F, C, H, W] oracle camera z [m]; poses [F, 4, 4]."""
    from jwmsim.worldgen.data import forward_warp

    errs = []
    for t in range(1, len(frames)):
        w, a = forward_warp(frames[t - 1], depth[t - 1].astype(np.float32), rig, poses[t - 1], rig, poses[t])
        if a.any():
            errs.append(float(np.abs(w.astype(np.float32) - frames[t].astype(np.float32))[a].mean() / 255.0))
    return errs


def _timed(fn, repeats: int = 3) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float().div(255.0).movedim(-1, -3)


class _Generator:
    """A diffusion row: the teacher (whole clip, bidirectional) or a causal student (frame by frame)."""

    def __init__(self, name: str, model, ae, steps: int, shift: float, window: int, causal: bool, seed: int):
        self.name, self.model, self.ae = name, model.eval(), ae
        self.steps, self.shift, self.window, self.causal, self.seed = steps, shift, window, causal, seed

    @torch.inference_mode()
    def clip(self, prior: torch.Tensor, alpha: torch.Tensor, motion: torch.Tensor, cams=None) -> torch.Tensor:
        """prior [F, C, 3, H, W], alpha [F, C, 1, H, W], motion [F, 3] -> composited frames [F, C, 3, H, W]."""
        from jwmsim.worldgen.sampler import KVCache, composite, generate_frame
        from jwmsim.worldgen.schedule import euler_step, sampling_sigmas

        cfg = self.model.cfg
        dev = next(self.model.parameters()).device
        prior, alpha, motion = prior.to(dev), alpha.to(dev), motion.to(dev)
        C = prior.shape[1]
        cams_t = None if cams is None else torch.as_tensor(cams, device=dev)
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((1, prior.shape[0], C, cfg.latent_channels, cfg.latent_h, cfg.latent_w), generator=g).to(dev)
        sig = sampling_sigmas(self.steps, self.shift).to(dev)
        p, a, m = prior[None], alpha[None], motion[None]
        if self.causal:
            cache = KVCache(self.window)
            z = torch.cat([generate_frame(self.model, cache, k, p[:, k:k + 1], a[:, k:k + 1], m[:, k:k + 1],
                                          noise[:, k:k + 1], sig, cams=cams_t) for k in range(prior.shape[0])], 1)
        else:
            x = noise
            Fn = prior.shape[0]
            for j in range(self.steps):
                s = sig[j].expand(1, Fn)
                x = euler_step(x, self.model(x, s, p, a, m, cams=cams_t), s, sig[j + 1].expand(1, Fn))
            z = x
        gen = self.ae.decode(z[0]).clamp(0, 1)
        return composite(gen, prior, alpha).cpu()


ROWS = ("prior", "inpaint_cv2", "teacher_50", "teacher_forcing_4", "ode_4", "dmd_4")


def _load_rows(cfg, device) -> tuple[list, object, list]:
    from jwmsim.checkpoint import CheckpointError
    from jwmsim.worldgen.train import load_autoencoder, load_dit

    out = Path(str(cfg.out))
    ae = load_autoencoder(out / "autoencoder" / "checkpoint", out, device)
    rows, missing = [], []
    spec = [("teacher_50", "bidirectional", int(cfg.teacher_steps), False),
            ("teacher_forcing_4", "teacher_forcing", int(cfg.steps), True),
            ("ode_4", "ode", int(cfg.steps), True), ("dmd_4", "dmd", int(cfg.steps), True)]
    wanted = None if cfg.rows is None else set(cfg.rows)
    for name, stage, steps, causal in spec:
        if wanted is not None and name not in wanted:
            continue
        stem = out / stage / "checkpoint"
        try:
            model = load_dit(stem, stage, out, device)
            meta = json.loads(stem.with_suffix(".json").read_text())
        except CheckpointError as e:
            missing.append({"row": name, "why": str(e)})
            continue
        rows.append(_Generator(name, model, ae, steps, float(meta.get("shift", 2.0)), int(meta.get("window", 2)),
                               causal, int(cfg.seed)))
    return rows, ae, missing


def autoencoder_psnr(ae, dataset: str, split: str = "test", max_logs: int | None = None, max_images: int = 600) -> dict:
    """Reconstruction PSNR [dB] of the autoencoder on a split's log images (main and shifted rigs)."""
    from jwmsim.worldgen.data import log_images

    imgs = log_images(dataset, split, max_logs, eval_rig_stride=5)
    rng = np.random.default_rng(0)
    imgs = imgs[rng.permutation(len(imgs))[:max_images]]
    ps = []
    with torch.inference_mode():
        for i in range(0, len(imgs), 32):
            x = _to_t(imgs[i:i + 32]).to(ae.latent_scale.device)
            ps.append((-10.0 * torch.log10((ae(x).clamp(0, 1) - x).pow(2).flatten(1).mean(1))).cpu().numpy())
    ps = np.concatenate(ps)
    return {"psnr_mean": float(ps.mean()), "psnr_median": float(np.median(ps)), "images": int(len(ps)), "split": split}


def rollout_curve(log_dir: str | Path, sampler, shift_m: float = 1.0, frames: int = 600, with_prior: bool = True,
                  source_stride: int = 3, progress: bool = False, conditions=None) -> dict:
    """Closed-loop-style rollout along a test log shifted ``shift_m`` sideways: per frame, the prior is the
    warp of the logged frames t and t - source_stride into the shifted pose (``with_prior=False``: empty
    prior channels, alpha = 0, generation only), the sampler generates the frame from its own past (KV
    cache), and PSNR [dB] against the oracle at that pose is recorded. Also flags divergence: NaN, a
    saturated frame (> 50 % of pixels at 0 or 1) or a collapsed one (pixel std < 0.01). conditions: weather
    and lighting (:mod:`.attributes`): the oracle renders them and the sampler gets their attributes (the
    sampler's model then needs the attribute adapter)."""
    from jwmsim.image_metrics import psnr
    from jwmsim.log import read_log
    from jwmsim.town import generate_town
    from jwmsim.town.dataset import split_of
    from jwmsim.town.scene import renderer
    from jwmsim.worldgen.data import _agents_at, ego_motion, offset_pose, warp_prior

    log = read_log(log_dir)
    if split_of(int(log.meta.town_seed)) != "test":
        raise ValueError(f"{log_dir}: town seed {log.meta.town_seed} is not a test seed; the rollout curve is "
                         "measured on test seeds only (make one: `jwmsim town make-log --seed 2000 --seconds 61`)")
    T = min(int(frames), log.num_frames - 1)
    rig = log.rig
    sampler.reset()
    curve, flags = [], []
    it = range(1, T + 1)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"rollout {'joint' if with_prior else 'gen-only'}", unit="frame", leave=False)
    cache: dict = {}
    from jwmsim.conditions import Conditions

    cond = Conditions.coerce(conditions)
    log_sun = (getattr(log.meta, "extra", None) or {}).get("sun_direction")
    with renderer(generate_town(int(log.meta.town_seed)), width=rig[0].width, height=rig[0].height) as oracle:
        for t in it:
            pose = offset_pose(log.ego.ego_to_world[t], shift_m, 0.0)
            motion = ego_motion(offset_pose(log.ego.ego_to_world[t - 1], shift_m, 0.0), pose)
            gt = _to_t(oracle.render(rig, pose, _agents_at(log, t), conditions=cond, frame=t)["rgb"])
            attr = None
            if not cond.is_clear:
                from jwmsim.worldgen.attributes import scene_attributes

                attr = torch.from_numpy(scene_attributes(cond, pose, log_sun))
            if with_prior:
                prgb, pal = warp_prior(log, [t, max(t - source_stride, 0)], rig, pose, cache)
                if len(cache) > 8:
                    cache.pop(min(cache))
                prior, alpha = _to_t(prgb), torch.from_numpy(pal)[:, None]
            else:
                prior, alpha = torch.zeros_like(gt), torch.zeros(gt.shape[0], 1, *gt.shape[-2:])
            out = sampler.step(prior, alpha, torch.from_numpy(motion), attr)["rgb"].cpu()
            bad = []
            if not torch.isfinite(out).all():
                bad.append("nan")
            if ((out <= 0.0) | (out >= 1.0)).float().mean() > 0.5:
                bad.append("saturated")
            if out.std() < 0.01:
                bad.append("collapsed")
            if bad:
                flags.append({"frame": t, "flags": bad})
            curve.append(float(psnr(out, gt).mean()))
    return {"log": str(log_dir), "shift_m": shift_m, "with_prior": with_prior, "conditions": cond.to_dict(),
            "psnr": curve, "divergence": flags}


def plot_curves(curves: dict[str, list[float]], path: str | Path, width: int = 800, height: int = 400) -> Path:
    """PSNR-per-frame curves as a PNG (OpenCV drawing; no plotting library is installed)."""
    import cv2

    from jwmsim.viewer import write_png

    img = np.full((height, width, 3), 255, np.uint8)
    x0, y0, x1, y1 = 60, 20, width - 20, height - 40
    vals = np.concatenate([np.asarray(v, float) for v in curves.values() if len(v)])
    lo, hi = float(np.floor(np.nanmin(vals))) - 1, float(np.ceil(np.nanmax(vals))) + 1
    n = max(len(v) for v in curves.values())
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    for k in range(5):
        yv = lo + (hi - lo) * k / 4
        y = int(y1 - (y1 - y0) * k / 4)
        cv2.putText(img, f"{yv:.0f}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"PSNR [dB] vs frame (0..{n})", (x0, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    colours = [(200, 30, 30), (30, 30, 200), (30, 150, 30), (150, 30, 150)]
    for i, (name, v) in enumerate(curves.items()):
        v = np.nan_to_num(np.asarray(v, float), nan=lo)
        if len(v) < 2:
            continue
        xs = x0 + (x1 - x0) * np.arange(len(v)) / max(n - 1, 1)
        ys = y1 - (y1 - y0) * (v - lo) / (hi - lo)
        pts = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, colours[i % 4], 1)
        cv2.putText(img, name, (x0 + 10, y0 + 16 * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colours[i % 4], 1)
    return write_png(path, img)


def evaluate(cfg) -> Path:
    """Run the evaluation table on the test clip cache (see module docstring); returns the JSON path."""
    from jwmsim.geometry import default_rig
    from jwmsim.town.dataset import split_of
    from jwmsim.worldgen.data import ClipSet
    from jwmsim.worldgen.train import resolve_device

    torch.set_num_threads(int(cfg.threads))
    device = resolve_device(str(cfg.device))
    bad = [r for r in (cfg.rows or []) if r not in ROWS]
    if bad:
        raise ValueError(f"rows {bad} are not evaluation rows; valid: {', '.join(ROWS)}")
    if bool(cfg.autoencoder_only):
        from jwmsim.worldgen.train import load_autoencoder

        out = Path(str(cfg.out))
        ae = load_autoencoder(out / "autoencoder" / "checkpoint", out, device)
        meta = json.loads((out / "autoencoder" / "checkpoint.json").read_text())
        res = {"command": "jwmsim eval worldgen " + " ".join(sys.argv[3:]), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "autoencoder_step": meta["step"], "autoencoder_train_minutes": meta.get("train_seconds", 0) / 60.0,
               "autoencoder_test": autoencoder_psnr(ae, str(cfg.dataset), "test", max_images=int(cfg.ae_images))}
        path = Path(str(cfg.results))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res["autoencoder_test"]))
        return path
    clips = ClipSet(str(cfg.data), "test", cfg.max_logs, extra=("depth", "pose"))
    if any(split_of(int(s)) != "test" for s in clips.arrays["seed"]):
        raise ValueError("the evaluation reads test seeds only")
    depth, poses = clips.arrays["depth"], clips.arrays["pose"]
    n = min(len(clips), int(cfg.max_clips))
    rig = default_rig()
    tau = float(cfg.tau)
    rows, ae, missing = _load_rows(cfg, device)
    arr = clips.arrays

    def classical(name):
        def run(i, cams=None):
            c = slice(None) if cams is None else list(cams)
            if name == "prior":
                return _to_t(arr["prior"][i][:, c])
            if name != "inpaint_cv2":
                raise ValueError(f"unknown classical row {name!r}")
            return _to_t(inpaint(arr["prior"][i][:, c], arr["alpha"][i][:, c] / 255.0, tau))
        return run

    methods = [(k, classical(k)) for k in ("prior", "inpaint_cv2") if cfg.rows is None or k in cfg.rows]
    for r in rows:
        def run(i, cams=None, r=r):
            c = slice(None) if cams is None else list(cams)
            b = clips.batch(np.array([i]))
            return r.clip(b["prior"][0][:, c], b["alpha"][0][:, c], b["motion"][0], cams).cpu()
        methods.append((r.name, run))

    gt_all = torch.cat([_to_t(arr["gt"][i]).flatten(0, 1) for i in range(n)])
    dev = ae.latent_scale.device

    def features(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([ae.features(x[i:i + 64].to(dev)).cpu() for i in range(0, len(x), 64)]).numpy()

    feats_gt = features(gt_all)
    oracle_temporal = [e for i in range(n) for e in temporal_error(arr["gt"][i], depth[i], poses[i], rig)]
    table = []
    from tqdm import tqdm

    for name, run in methods:
        acc: dict[str, list[float]] = {}
        outs, temporal = [], []
        for i in tqdm(range(n), desc=f"eval {name}", unit="clip", disable=not bool(cfg.progress), leave=False):
            pred = run(i)  # [F, C, 3, H, W]
            gt = _to_t(arr["gt"][i])
            al = torch.from_numpy(arr["alpha"][i]).float().div(255.0)[:, :, None]
            for k, v in region_metrics(pred.flatten(0, 1), gt.flatten(0, 1), al.flatten(0, 1), tau).items():
                acc.setdefault(k, []).extend(v)
            outs.append(pred.flatten(0, 1))
            u8 = (pred.movedim(-3, -1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
            temporal += temporal_error(u8, depth[i], poses[i], rig)
        feats = features(torch.cat(outs))
        row = {"row": name, **{k: float(np.mean(v)) if v else None for k, v in acc.items()},
               "fd_ae": frechet_distance(feats, feats_gt), "temporal_error": float(np.mean(temporal)),
               "s_per_frame_3cam": _timed(lambda: run(0)) / clips.frames,
               "s_per_frame_1cam": _timed(lambda: run(0, [1])) / clips.frames}
        table.append(row)
        print(json.dumps(row))
    ae_test = autoencoder_psnr(ae, str(cfg.dataset), "test", max_images=int(cfg.ae_images)) if cfg.dataset else None
    rollouts = None
    if cfg.rollout_log:
        from jwmsim.worldgen.sampler import OnlineSampler

        students = {r.name: r for r in rows if r.causal}
        runs = [("joint_dmd", "dmd_4", True), ("generation_only_dmd", "dmd_4", False), ("joint_ode", "ode_4", True)]
        rollouts = {}
        for label, row, prior_on in runs:
            if row not in students:
                rollouts[label] = {"missing": f"no {row} checkpoint"}
                continue
            r = students[row]
            smp = OnlineSampler(r.model, ae, steps=r.steps, window=r.window, shift=r.shift, seed=int(cfg.seed),
                                device=device)
            rollouts[label] = rollout_curve(str(cfg.rollout_log), smp, float(cfg.rollout_shift),
                                            int(cfg.rollout_frames), prior_on, progress=bool(cfg.progress))
        curves = {k: v["psnr"] for k, v in rollouts.items() if "psnr" in v}
        if curves:
            png = Path(str(cfg.results)).with_name("worldgen_rollout.png")
            plot_curves(curves, png)
            rollouts["plot"] = str(png)
    res = {"command": "jwmsim eval worldgen " + " ".join(sys.argv[3:]), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads": int(cfg.threads), "device": str(device)},
           "loadavg": os.getloadavg(), "tau": tau, "clips": n, "frames_per_clip": clips.frames,
           "test_seeds": sorted({int(s) for s in arr["seed"][:n]}), "oracle_temporal_error": float(np.mean(oracle_temporal)),
           "autoencoder_test": ae_test, "rows": table, "missing_rows": missing, "rollouts": rollouts,
           "note": "fd_ae: Fréchet distance on the project's own autoencoder features, not Inception FID"}
    path = Path(str(cfg.results))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    return path


__all__ = ["evaluate", "frechet_distance", "inpaint", "region_metrics", "temporal_error", "autoencoder_psnr"]
