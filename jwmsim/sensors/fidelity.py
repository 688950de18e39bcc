"""Fidelity of a sensor against the oracle at the same pose and time: what the town makes measurable and no
log-based simulator can report.

Per camera: PSNR [dB] and SSIM on all pixels, and PSNR on the pixels the Gaussian world left empty (its
coverage alpha < ``tau``; NaN when there are none). Images: uint8 [C, H, W, 3] (:mod:`jwmsim.geometry`).
"""

from __future__ import annotations

import math

import numpy as np


def frame_fidelity(images: np.ndarray, oracle: np.ndarray, names: list[str], alpha: np.ndarray | None = None,
                   tau: float = 0.5) -> dict:
    """{"cameras": {name: {"psnr", "ssim"[, "psnr_empty", "empty_fraction"]}}, "psnr", "ssim"[, "psnr_empty"]}
    of images [C, H, W, 3] uint8 against oracle [C, H, W, 3] uint8; alpha [C, H, W] coverage or None."""
    from jwmsim.image_metrics import psnr, ssim

    if images.shape != oracle.shape:
        raise ValueError(f"sensor images {images.shape} and oracle images {oracle.shape} differ in shape")
    p = psnr(images, oracle).numpy().astype(float)
    s = ssim(images, oracle).numpy().astype(float)
    cams: dict[str, dict] = {}
    empty = None
    if alpha is not None:
        mask = np.asarray(alpha) < tau
        empty = psnr(images, oracle, mask=mask).numpy().astype(float)
    for i, n in enumerate(names):
        cams[n] = {"psnr": _finite(p[i]), "ssim": float(s[i])}
        if empty is not None:
            cams[n]["psnr_empty"] = _finite(empty[i])
            cams[n]["empty_fraction"] = float(mask[i].mean())
    out = {"cameras": cams, "psnr": float(np.mean([c["psnr"] for c in cams.values()])),
           "ssim": float(np.mean(s))}
    if empty is not None:
        vals = [c["psnr_empty"] for c in cams.values() if math.isfinite(c["psnr_empty"])]
        out["psnr_empty"] = float(np.mean(vals)) if vals else float("nan")
        out["empty_fraction"] = float(mask.mean())
    return out


def _finite(x: float) -> float:
    """PSNR of identical images is inf; report 100 dB (a cap) so means stay finite. NaN (empty mask) stays."""
    return 100.0 if x == float("inf") else float(x)


def summarize(curve: list[dict]) -> dict:
    """Episode summary of per-step fidelity dicts: means and the curves over time."""
    if not curve:
        return {}
    keys = [k for k in ("psnr", "ssim", "psnr_empty", "empty_fraction") if k in curve[0]]
    out: dict = {}
    for k in keys:
        v = np.array([c[k] for c in curve], float)
        ok = np.isfinite(v)
        out[f"{k}_mean"] = float(v[ok].mean()) if ok.any() else float("nan")
        out[f"{k}_curve"] = [round(float(x), 4) for x in v]
    return out


__all__ = ["frame_fidelity", "summarize"]
