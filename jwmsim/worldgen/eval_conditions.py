"""WorldGen under scene attributes, on town TEST seeds: does the conditioned student show fog, rain, night or
a low sun that the clear-daylight prior does not have?

For each preset of :data:`.attributes.TEST_CONDITIONS`, the test clip cache (clear priors, as the joint sensor
renders them from a clear log) gets its ground truth re-rendered by the oracle under the preset
(:func:`.attributes.make_condition_clips`). Rows, each generating the clips frame by frame with the
:class:`~.sampler.OnlineSampler` (4 steps, KV cache, seeded):

- ``clear_oracle``: the oracle's clear-daylight frame itself (what a perfect sensor that ignores the
  conditions would show: how much the conditions change the image);
- ``unconditioned``: the default student with no attributes (the joint sensor before the attributes existed);
- ``conditioned``: the student with the ``conditions`` adapter and the clip's attributes, the generation
  alone (the default under attributes);
- ``conditioned_residual``: the clear frame (clear generation composited with the prior) plus the
  conditioned minus the clear generation (:class:`~.sampler.OnlineSampler` ``under_attributes="residual"``);
- ``conditioned_composite``: the conditioned generation with the clear prior pasted where it observed the
  scene (ablation);
- ``conditioned@NAME``: another adapter (``adapters``: name -> run folder), e.g. the adaLN-only one (rank 0)
  beside the default with the low-rank branch (ablation).

Metrics against the conditioned oracle: PSNR over all pixels, in filled (alpha < tau) and observed regions,
SSIM over all pixels, and the error of the mean image brightness. CLI: ``jwmsim eval worldgen
conditions=true`` -> ``benchmarks/results/worldgen_conditions.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jwmsim.worldgen.evaluate import _to_t  # uint8 [..., H, W, 3] -> float [..., 3, H, W]

ROWS = ("clear_oracle", "unconditioned", "conditioned", "conditioned_residual", "conditioned_composite")


def _metrics(pred: torch.Tensor, gt: torch.Tensor, alpha: torch.Tensor, tau: float) -> dict:
    """pred, gt [N, 3, H, W] in [0, 1]; alpha [N, 1, H, W] -> per-image lists."""
    from jwmsim.image_metrics import masked_psnr, psnr, ssim

    out = {"psnr": psnr(pred, gt).tolist(), "ssim": ssim(pred, gt).tolist(),
           "brightness_error": (pred.mean((1, 2, 3)) - gt.mean((1, 2, 3))).abs().tolist()}
    for name, m in (("filled", alpha[:, 0] < tau), ("observed", alpha[:, 0] >= tau)):
        has = m.flatten(1).any(1)
        vals = masked_psnr(pred[has], gt[has], m[has]) if has.any() else torch.zeros(0)
        out[f"psnr_{name}"] = [float(v) for v in vals if torch.isfinite(v)]
    return out


def evaluate_conditions(cfg) -> Path:
    """The table of the module docstring; returns the JSON path."""
    from jwmsim.town.dataset import log_dir_name, split_of
    from jwmsim.worldgen.attributes import TEST_CONDITIONS, make_condition_clips
    from jwmsim.worldgen.sampler import OnlineSampler
    from jwmsim.worldgen.train import load_autoencoder, load_conditioned, load_dit, resolve_device

    torch.set_num_threads(int(cfg.threads))
    device = resolve_device(str(cfg.device))
    out = Path(str(cfg.out))
    ae = load_autoencoder(out / "autoencoder" / "checkpoint", out, device)
    base = load_dit(out / "dmd" / "checkpoint", "dmd", out, device).eval()
    cond = load_conditioned(out, device).eval()
    meta = json.loads((out / "dmd" / "checkpoint.json").read_text())
    shift, window, steps, tau = float(meta.get("shift", 2.0)), int(meta.get("window", 2)), int(cfg.steps), float(cfg.tau)
    samplers = {"unconditioned": OnlineSampler(base, ae, steps, window, shift, device=device),
                "conditioned": OnlineSampler(cond, ae, steps, window, shift, device=device),
                "conditioned_residual": OnlineSampler(cond, ae, steps, window, shift, device=device,
                                                      under_attributes="residual"),
                "conditioned_composite": OnlineSampler(cond, ae, steps, window, shift, device=device,
                                                       under_attributes="composite")}
    adapters = dict(cfg.get("adapters") or {})
    for name, folder in adapters.items():
        other = load_conditioned(Path(str(folder)), device).eval()
        samplers[f"conditioned@{name}"] = OnlineSampler(other, ae, steps, window, shift, device=device)
    rows = ("clear_oracle",) + tuple(samplers)
    files = sorted((Path(str(cfg.data)) / "test").glob("clips_town*.npz"))[: cfg.max_logs or None]
    if not files:
        raise FileNotFoundError(f"{cfg.data}/test: no test clips; make them with `jwmsim worldgen make-data "
                                "split=test clips_per_log=16`")
    per_log = max(1, int(cfg.max_clips) // len(files))
    presets = list(cfg.get("condition_presets") or TEST_CONDITIONS)
    table: dict = {}
    t_start = time.time()
    for preset in presets:
        acc: dict[str, dict[str, list]] = {r: {} for r in rows}
        for f in files:
            z = np.load(f)
            arrays = {k: z[k][:per_log] for k in z.files}
            s = int(arrays["seed"][0])
            if split_of(s) != "test":
                raise ValueError(f"{f}: town seed {s} is not a test seed; this evaluation reads test seeds only")
            cond_arrays, _ = make_condition_clips(arrays, Path(str(cfg.dataset)) / "test" / log_dir_name(s),
                                                  conditions=preset)
            for n in range(len(arrays["gt"])):
                gt = _to_t(cond_arrays["gt"][n]).flatten(0, 1)
                alpha = torch.from_numpy(arrays["alpha"][n]).float().div(255.0)[:, :, None]  # [F, C, 1, H, W]
                prior = _to_t(arrays["prior"][n])
                preds = {"clear_oracle": _to_t(arrays["gt"][n]).flatten(0, 1)}
                for name, sampler in samplers.items():
                    sampler.reset(seed=int(cfg.seed) + n)
                    frames = []
                    for k in range(prior.shape[0]):
                        attr = None if name == "unconditioned" else torch.from_numpy(cond_arrays["attr"][n, k])
                        frames.append(sampler.step(prior[k], alpha[k], torch.from_numpy(arrays["motion"][n, k]),
                                                   attr)["rgb"].cpu())
                    preds[name] = torch.stack(frames).flatten(0, 1)
                for name, pred in preds.items():
                    for key, vals in _metrics(pred, gt, alpha.flatten(0, 1), tau).items():
                        acc[name].setdefault(key, []).extend(vals)
        table[preset] = {r: {f"{k}_mean": float(np.mean(v)) if v else None for k, v in m.items()} | {
            "images": len(m.get("psnr", []))} for r, m in acc.items()}
        print(f"{preset}: " + ", ".join(f"{r} {table[preset][r]['psnr_mean']:.2f} dB" for r in rows), flush=True)
    mean = {r: {k: float(np.mean([table[p][r][k] for p in presets if table[p][r][k] is not None]))
                for k in table[presets[0]][r] if k.endswith("_mean")} for r in rows}
    cmeta = json.loads((out / "conditions" / "checkpoint.json").read_text())
    res = {"command": "jwmsim eval worldgen " + " ".join(sys.argv[3:]), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                       "load_average": list(__import__("os").getloadavg())},
           "seconds": round(time.time() - t_start, 1), "tau": tau, "steps": steps, "clips_per_log": per_log,
           "logs": [f.name for f in files], "presets": presets, "rows": list(rows),
           "adapter": {"step": cmeta.get("step"), "train_minutes": cmeta.get("train_seconds", 0) / 60.0,
                       "hidden": cmeta["model_config"].get("attr_hidden"),
                       "rank": cmeta["model_config"].get("attr_rank", 0)},
           "other_adapters": {n: str(f) for n, f in adapters.items()},
           "per_condition": table, "mean_over_conditions": mean}
    path = Path(str(cfg.conditions_results))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    tmp.replace(path)
    return path


__all__ = ["ROWS", "evaluate_conditions"]
