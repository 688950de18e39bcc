"""`GaussianScene`: a set of 3D Gaussians with labels, as plain torch tensors.

Conventions (frames, quaternions wxyz, units) are those of :mod:`jwmsim.geometry`. A scene lives in one
frame: the world frame for static Gaussians, or an agent's box frame for that agent's Gaussians (the
simulator moves them into the world with :meth:`GaussianScene.transform`).

Colours are spherical-harmonics coefficients as in 3DGS / gsplat: ``colors`` is ``[N, K, 3]`` with
``K = 1`` (degree 0, view-independent) or ``K = 4`` (degree 1). The rendered colour of a Gaussian seen along
the unit direction ``d`` (camera centre -> Gaussian mean, world frame) is
``max(0, SH0 * C0 - C1 * d_y * SH1 + C1 * d_z * SH2 - C1 * d_x * SH3 + 0.5)``, so a degree-0 scene with
``SH0 = (rgb - 0.5) / C0`` renders ``rgb``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from jwmsim import geometry

SCHEMA_VERSION = 1
"""Version of the on-disk layout written by :meth:`GaussianScene.save`. Bump it when the layout changes."""

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical-harmonics constant, 1 / (2 sqrt(pi))."""
SH_C1 = 0.4886025119029199
"""Degree-1 real spherical-harmonics constant, sqrt(3) / (2 sqrt(pi))."""

_SH_K_TO_DEGREE = {1: 0, 4: 1}

_FLOAT_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "colors")
_LABEL_FIELDS = ("instance_id", "semantic", "dynamic")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [..., 3] in [0, 1] -> degree-0 SH coefficient [..., 3] (inverse of ``SH0 * C0 + 0.5``)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Degree-0 SH coefficient [..., 3] -> RGB [..., 3] (``SH0 * C0 + 0.5``, not clamped)."""
    return sh0 * SH_C0 + 0.5


def eval_sh(colors: torch.Tensor, dirs: torch.Tensor, sh_degree: int) -> torch.Tensor:
    """Evaluate SH colours.

    colors: [..., K, 3] coefficients; dirs: [..., 3] view directions (camera -> Gaussian; need not be unit);
    sh_degree: 0 or 1, at most the degree stored in ``colors``. Returns RGB [..., 3], clamped at 0 from
    below (as gsplat and the 3DGS CUDA code: ``clamp_min(sh + 0.5, 0)``), not clamped above.
    """
    out = colors[..., 0, :] * SH_C0
    if sh_degree >= 1:
        d = torch.nn.functional.normalize(dirs, dim=-1, eps=1e-12)
        x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
        out = out - SH_C1 * y * colors[..., 1, :] + SH_C1 * z * colors[..., 2, :] - SH_C1 * x * colors[..., 3, :]
    return torch.clamp_min(out + 0.5, 0.0)


def _as_index(sel: torch.Tensor | np.ndarray | Sequence[int] | slice, n: int,
              device: torch.device) -> torch.Tensor | slice:
    """A boolean mask [N] or integer indices -> something usable to index dim 0 of every field."""
    if isinstance(sel, slice):
        return sel
    t = torch.as_tensor(np.asarray(sel) if not isinstance(sel, torch.Tensor) else sel)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ValueError(f"mask must have shape [{n}] (one entry per Gaussian), got {tuple(t.shape)}")
        return t.to(device)
    if t.dtype.is_floating_point:
        raise ValueError("indices must be integers or a boolean mask, got floating-point values; cast with .long()")
    return t.to(device=device, dtype=torch.long).reshape(-1)


@dataclass
class GaussianScene:
    """N 3D Gaussians with appearance and labels. All fields are torch tensors on one device.

    Geometry and appearance (floating point, differentiable; float32 by default):
        means: [N, 3] centres [m] in the scene's frame.
        quats: [N, 4] rotations, wxyz, unit norm (gsplat also accepts unnormalised; :meth:`validate` does not).
        log_scales: [N, 3] natural log of the standard deviations along the Gaussian's axes [log m].
        opacity_logits: [N] logit of the peak opacity (opacity = sigmoid(logit)).
        colors: [N, K, 3] SH coefficients, K = 1 (degree 0) or 4 (degree 1); see the module docstring.
    Labels (not differentiable):
        instance_id: [N] int32; 0 = background / static, >0 = an agent instance (the town's instance ids).
        semantic: [N] int32 semantic class (the town's classes).
        dynamic: [N] bool, True for Gaussians that move with an agent.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    colors: torch.Tensor
    instance_id: torch.Tensor
    semantic: torch.Tensor
    dynamic: torch.Tensor

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls, sh_degree: int = 0, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
              ) -> "GaussianScene":
        """A scene with no Gaussians."""
        k = (sh_degree + 1) ** 2
        if k not in _SH_K_TO_DEGREE:
            raise ValueError(f"sh_degree must be 0 or 1, got {sh_degree}")
        f = dict(dtype=dtype, device=device)
        return cls(torch.zeros(0, 3, **f), torch.zeros(0, 4, **f), torch.zeros(0, 3, **f), torch.zeros(0, **f),
                   torch.zeros(0, k, 3, **f), torch.zeros(0, dtype=torch.int32, device=device),
                   torch.zeros(0, dtype=torch.int32, device=device), torch.zeros(0, dtype=torch.bool, device=device))

    @classmethod
    def from_params(cls, means, quats=None, scales=None, opacities=None, rgb=None, *, log_scales=None,
                    opacity_logits=None, colors=None, instance_id=None, semantic=None, dynamic=None,
                    dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "GaussianScene":
        """Build a scene from activated values (the convenient way to write a scene by hand).

        means [N, 3] m; quats [N, 4] wxyz (normalised here; default identity); scales [N, 3] m (std devs) or
        log_scales; opacities [N] in (0, 1) or opacity_logits; rgb [N, 3] in [0, 1] (stored as degree-0 SH) or
        colors [N, K, 3] SH coefficients; labels default to 0 / 0 / False. Arrays may be numpy or torch.
        """
        f = dict(dtype=dtype, device=device)
        means = torch.as_tensor(np.asarray(means) if not isinstance(means, torch.Tensor) else means, **f)
        n = means.shape[0] if means.ndim == 2 else -1
        if means.ndim != 2 or means.shape[1] != 3:
            raise ValueError(f"means must be [N, 3], got {tuple(means.shape)}")

        def t(x, **kw):
            return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, **kw)

        q = t(quats, **f) if quats is not None else torch.tensor([1.0, 0, 0, 0], **f).expand(n, 4).clone()
        q = geometry.quat_normalize(q)
        if log_scales is None:
            if scales is None:
                raise ValueError("give scales [N, 3] (metres) or log_scales")
            s = t(scales, **f)
            if s.ndim == 1:
                s = s[:, None].expand(n, 3)
            if (s <= 0).any():
                raise ValueError("scales must be > 0 (they are standard deviations in metres)")
            log_scales = torch.log(s)
        else:
            log_scales = t(log_scales, **f)
        if opacity_logits is None:
            o = t(opacities if opacities is not None else np.full(n, 0.9), **f)
            if ((o <= 0) | (o >= 1)).any():
                raise ValueError("opacities must lie strictly inside (0, 1); pass opacity_logits for saturated values")
            opacity_logits = torch.logit(o)
        else:
            opacity_logits = t(opacity_logits, **f)
        if colors is None:
            if rgb is None:
                raise ValueError("give rgb [N, 3] in [0, 1] or SH colors [N, K, 3]")
            colors = rgb_to_sh0(t(rgb, **f))[:, None, :]
        else:
            colors = t(colors, **f)
        ii = dict(dtype=torch.int32, device=device)
        scene = cls(
            means=means, quats=q.contiguous(), log_scales=log_scales.contiguous(),
            opacity_logits=opacity_logits.contiguous(), colors=colors.contiguous(),
            instance_id=t(instance_id, **ii) if instance_id is not None else torch.zeros(n, **ii),
            semantic=t(semantic, **ii) if semantic is not None else torch.zeros(n, **ii),
            dynamic=(t(dynamic, dtype=torch.bool, device=device) if dynamic is not None
                     else torch.zeros(n, dtype=torch.bool, device=device)),
        )
        scene.validate()
        return scene

    # ------------------------------------------------------------------ basic properties

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def sh_degree(self) -> int:
        """Highest SH degree stored (0 for K = 1, 1 for K = 4)."""
        k = int(self.colors.shape[1])
        if k not in _SH_K_TO_DEGREE:
            raise ValueError(f"colors must be [N, K, 3] with K in (1, 4), got K = {k}")
        return _SH_K_TO_DEGREE[k]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def scales(self) -> torch.Tensor:
        """[N, 3] standard deviations [m]."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        """[N] peak opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def rgb(self) -> torch.Tensor:
        """[N, 3] view-independent (degree-0) colour, ``SH0 * C0 + 0.5`` clamped at 0."""
        return torch.clamp_min(sh0_to_rgb(self.colors[:, 0, :]), 0.0)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Field name -> tensor, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def _replace(self, **kw) -> "GaussianScene":
        d = self.tensors()
        d.update(kw)
        return GaussianScene(**d)

    def float_params(self) -> list[torch.Tensor]:
        """The five differentiable tensors (means, quats, log_scales, opacity_logits, colors)."""
        return [getattr(self, n) for n in _FLOAT_FIELDS]

    # ------------------------------------------------------------------ validation

    def validate(self, values: bool = True) -> "GaussianScene":
        """Check shapes, dtypes, devices and (if ``values``) finiteness and unit quaternions; return self.

        Raises ValueError naming the field and the fix."""
        if not all(isinstance(v, torch.Tensor) for v in self.tensors().values()):
            bad = [k for k, v in self.tensors().items() if not isinstance(v, torch.Tensor)]
            raise ValueError(f"GaussianScene fields {bad} are not torch tensors; wrap them with torch.as_tensor")
        n = self.means.shape[0] if self.means.ndim >= 1 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,),
                    "instance_id": (n,), "semantic": (n,), "dynamic": (n,)}
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise ValueError(f"GaussianScene.means must be [N, 3], got {tuple(self.means.shape)}")
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"GaussianScene.{name} must have shape {list(shape)} (N = {n} from means), got "
                                 f"{list(got)}; build the fields from the same set of Gaussians")
        c = self.colors
        if c.ndim != 3 or c.shape[0] != n or c.shape[2] != 3 or c.shape[1] not in _SH_K_TO_DEGREE:
            raise ValueError(f"GaussianScene.colors must be SH coefficients [N, K, 3] with K = 1 or 4 (N = {n}), "
                             f"got {list(c.shape)}; RGB [N, 3] converts with rgb_to_sh0(rgb)[:, None, :]")
        dtype = self.means.dtype
        for name in _FLOAT_FIELDS:
            t = getattr(self, name)
            if not t.dtype.is_floating_point or t.dtype != dtype:
                raise ValueError(f"GaussianScene.{name} has dtype {t.dtype}; all float fields must share the dtype "
                                 f"of means ({dtype}); convert with scene.to(dtype=...)")
        for name, dt in (("instance_id", torch.int32), ("semantic", torch.int32), ("dynamic", torch.bool)):
            if getattr(self, name).dtype != dt:
                raise ValueError(f"GaussianScene.{name} must be {dt}, got {getattr(self, name).dtype}; "
                                 f"cast with .to({dt})")
        devices = {k: v.device for k, v in self.tensors().items()}
        if len(set(devices.values())) > 1:
            raise ValueError(f"GaussianScene fields live on different devices {devices}; move with scene.to(device)")
        if not values:
            return self
        for name in _FLOAT_FIELDS:
            t = getattr(self, name).detach()
            if t.numel() and not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(-1).sum())
                raise ValueError(f"GaussianScene.{name} has non-finite values in {bad} Gaussian(s); remove them with "
                                 f"scene.subset(torch.isfinite(scene.{name}).reshape(len(scene), -1).all(-1))")
        if n:
            norm = self.quats.detach().norm(dim=-1)
            worst = float((norm - 1).abs().max())
            if worst > 1e-3:
                raise ValueError(f"GaussianScene.quats must be unit quaternions (wxyz); the worst norm is off by "
                                 f"{worst:.3g}; fix with scene.normalize_quats()")
        return self

    # ------------------------------------------------------------------ functional edits (return new scenes)

    def normalize_quats(self) -> "GaussianScene":
        """A copy with unit quaternions (differentiable)."""
        return self._replace(quats=geometry.quat_normalize(self.quats))

    def subset(self, sel) -> "GaussianScene":
        """Gaussians selected by a boolean mask [N] or integer indices (differentiable gather)."""
        idx = _as_index(sel, len(self), self.device)
        return GaussianScene(**{k: v[idx] for k, v in self.tensors().items()})

    __getitem__ = subset

    def with_sh_degree(self, sh_degree: int) -> "GaussianScene":
        """A copy with K = (sh_degree+1)^2 colour coefficients: higher bands are zero-padded or dropped."""
        k = (sh_degree + 1) ** 2
        if k not in _SH_K_TO_DEGREE:
            raise ValueError(f"sh_degree must be 0 or 1, got {sh_degree}")
        c = self.colors
        if c.shape[1] >= k:
            return self._replace(colors=c[:, :k])
        pad = torch.zeros(c.shape[0], k - c.shape[1], 3, dtype=c.dtype, device=c.device)
        return self._replace(colors=torch.cat([c, pad], 1))

    @classmethod
    def concatenate(cls, scenes: Iterable["GaussianScene"]) -> "GaussianScene":
        """One scene with all Gaussians, in order. Scenes of different SH degree are padded to the highest
        (zero higher-band coefficients render the same colour)."""
        scenes = list(scenes)
        if not scenes:
            raise ValueError("concatenate needs at least one scene; use GaussianScene.empty() for none")
        deg = max(s.sh_degree for s in scenes)
        dtypes = {s.dtype for s in scenes}
        devices = {s.device for s in scenes}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueError(f"scenes differ in dtype {dtypes} or device {devices}; convert them with .to() first")
        scenes = [s.with_sh_degree(deg) for s in scenes]
        return cls(**{f.name: torch.cat([getattr(s, f.name) for s in scenes], 0) for f in fields(cls)})

    def transform(self, mask, se3) -> "GaussianScene":
        """Apply the rigid transform ``se3`` [4, 4] (e.g. an agent's box_to_world) to the Gaussians in ``mask``.

        mask: bool [N], integer indices, or None for all. Means are mapped (R x + t); quaternions are
        left-multiplied by R's quaternion; degree-1 SH coefficients are rotated too, so view-dependent colour
        turns with the object. Differentiable w.r.t. the scene (not w.r.t. ``se3``). Returns a new scene.
        """
        se3_t = torch.as_tensor(np.asarray(se3) if not isinstance(se3, torch.Tensor) else se3.detach())
        if se3_t.shape != (4, 4):
            raise ValueError(f"se3 must be a 4x4 rigid transform, got shape {tuple(se3_t.shape)}")
        r64 = se3_t[:3, :3].double().cpu()
        if not torch.allclose(r64 @ r64.T, torch.eye(3, dtype=torch.float64), atol=1e-5) or torch.det(r64) < 0:
            raise ValueError("se3[:3, :3] is not a rotation (R R^T != I or det < 0); build it with "
                             "jwmsim.geometry.se3_from_rt")
        if mask is None:
            mask = torch.ones(len(self), dtype=torch.bool, device=self.device)
        idx = _as_index(mask, len(self), self.device)
        if isinstance(idx, slice):
            idx = torch.arange(len(self), device=self.device)[idx]
        if idx.dtype == torch.bool:
            idx = idx.nonzero()[:, 0]
        r = r64.to(self.dtype).to(self.device)
        t = se3_t[:3, 3].to(self.dtype).to(self.device)
        qr = torch.as_tensor(geometry.rotmat_to_quat(r64.numpy()), dtype=self.dtype, device=self.device)
        means = self.means.index_copy(0, idx, self.means[idx] @ r.T + t)
        q_new = geometry.quat_multiply(qr.expand(len(idx), 4), self.quats[idx])
        quats = self.quats.index_copy(0, idx, q_new)
        colors = self.colors
        if colors.shape[1] == 4 and len(idx):
            # Degree-1 colour is C1 * v . d with v = (-SH3, -SH1, SH2) per channel; rotating the object by R
            # maps v -> R v (f'(d) = f(R^T d)).
            c = colors[idx]
            v = torch.stack([-c[:, 3], -c[:, 1], c[:, 2]], 1)  # [M, 3 xyz, 3 rgb]
            v = torch.einsum("ij,mjc->mic", r, v)
            c_new = torch.stack([c[:, 0], -v[:, 1], v[:, 2], -v[:, 0]], 1)
            colors = colors.index_copy(0, idx, c_new)
        return self._replace(means=means, quats=quats, colors=colors)

    def prune(self, min_opacity: float = 1.0 / 255.0, max_scale: float | None = None
              ) -> tuple["GaussianScene", torch.Tensor]:
        """Drop Gaussians whose opacity < min_opacity (they can never pass the 1/255 alpha threshold at the
        default) or whose largest scale > max_scale [m]. Returns (scene, keep mask [N])."""
        keep = self.opacities.detach() >= min_opacity
        if max_scale is not None:
            keep &= self.scales.detach().amax(-1) <= max_scale
        return self.subset(keep), keep

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "GaussianScene":
        """Move to a device and/or cast the float fields to a floating dtype (labels keep their dtypes)."""
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point (float32/float64), got {dtype}")
        out = {}
        for k, v in self.tensors().items():
            out[k] = v.to(device=device, dtype=dtype if (dtype is not None and k in _FLOAT_FIELDS) else None)
        return GaussianScene(**out)

    def detach(self) -> "GaussianScene":
        return GaussianScene(**{k: v.detach() for k, v in self.tensors().items()})

    def clone(self) -> "GaussianScene":
        return GaussianScene(**{k: v.clone() for k, v in self.tensors().items()})

    def requires_grad_(self, flag: bool = True) -> "GaussianScene":
        """Make the five float fields leaf tensors that require grad (in place; returns self)."""
        for name in _FLOAT_FIELDS:
            setattr(self, name, getattr(self, name).detach().requires_grad_(flag))
        return self

    # ------------------------------------------------------------------ persistence (safetensors only)

    def save(self, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> None:
        """Write to ``path`` (.safetensors) with ``schema_version`` in the metadata. Never pickles."""
        from safetensors.torch import save_file

        self.validate()
        meta = {"format": "jwmsim.GaussianScene", "schema_version": str(SCHEMA_VERSION),
                "sh_degree": str(self.sh_degree), "num_gaussians": str(len(self))}
        if extra_metadata:
            clash = set(extra_metadata) & set(meta)
            if clash:
                raise ValueError(f"extra_metadata keys {sorted(clash)} are reserved; rename them")
            meta.update({str(k): str(v) for k, v in extra_metadata.items()})
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors().items()}
        save_file(tensors, os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "GaussianScene":
        """Read a file written by :meth:`save`. Unknown schema versions raise ValueError."""
        with _open_safetensors(path) as f:
            meta = f.metadata() or {}
            if meta.get("format") != "jwmsim.GaussianScene":
                raise ValueError(f"{path} is not a jwmsim GaussianScene file (metadata format = "
                                 f"{meta.get('format')!r}); write it with GaussianScene.save")
            version = meta.get("schema_version")
            if version != str(SCHEMA_VERSION):
                raise ValueError(f"{path} has GaussianScene schema_version {version!r}, this jwmsim reads "
                                 f"{SCHEMA_VERSION}; re-export the scene with this version of jwmsim")
            keys = set(f.keys())
            missing = [fl.name for fl in fields(cls) if fl.name not in keys]
            if missing:
                raise ValueError(f"{path} lacks fields {missing}; the file is corrupt or from another tool")
            try:
                tensors = {fl.name: f.get_tensor(fl.name) for fl in fields(cls)}
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad data
                raise ValueError(f"{path}: tensors cannot be read ({e}); the file is corrupt or truncated") from None
        return cls(**tensors).to(device).validate()

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict[str, str]:
        """The safetensors metadata of a saved scene (schema_version, sh_degree, num_gaussians, extras)."""
        with _open_safetensors(path) as f:
            return dict(f.metadata() or {})

    def __repr__(self) -> str:
        return (f"GaussianScene(N={len(self)}, sh_degree={self.sh_degree if self.colors.ndim == 3 else '?'}, "
                f"dtype={self.dtype}, device={self.device})")


def _open_safetensors(path: str | os.PathLike):
    """safe_open(path), or a ValueError naming the file (missing, a directory, empty, truncated, not
    safetensors) instead of safetensors' own error types (SafetensorError, OSError)."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory; give the scene's .safetensors file (e.g. {p / 'scene.safetensors'})")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such scene file")
    if p.stat().st_size == 0:
        raise ValueError(f"{p} is empty (0 bytes); the scene was not written completely — write it again")
    try:
        return safe_open(os.fspath(p), framework="pt", device="cpu")
    except Exception as e:  # noqa: BLE001 - SafetensorError is not importable under a stable name
        raise ValueError(f"{p} is not a readable .safetensors file ({e}); it is truncated or of another "
                         "format — write it again with GaussianScene.save") from None


__all__ = ["GaussianScene", "SCHEMA_VERSION", "SH_C0", "SH_C1", "eval_sh", "rgb_to_sh0", "sh0_to_rgb"]
