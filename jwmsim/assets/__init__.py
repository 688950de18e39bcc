"""The Gaussian asset library: appearance for agents the Gaussian world has never seen (issue 14, item 3).

Injected agents (a scenario's ``inject:`` list, :mod:`jwmsim.inject`) have track ids that no camera log
contains, so WorldRec holds no Gaussians for them and the ``splat`` / ``joint`` sensors would draw nothing
where the oracle draws a deer. The library gives every agent kind a small Gaussian set in its BOX frame, and
:func:`asset_gaussians` scales and tints it for a given agent; the sensors place it at the simulated box
like any reconstructed agent (:class:`jwmsim.sensors.gaussian.SplatSensor`).

On disk (``jwmsim/assets/data/`` is the shipped default; ``jwmsim assets build out=DIR`` makes one)::

    index.json        {"format": "jwmsim.assets", "version": 1, "kinds": {kind: entry}, "aliases": {...}}
    <kind>.safetensors

One safetensors file per kind (fp16 on disk, float32 once loaded), N Gaussians in the agent's box frame
(origin at the box centre, x forward, y left, z up, metres; :mod:`jwmsim.geometry`) for the box it was built
for, parameterised as :class:`jwmsim.splat.scene.GaussianScene` (degree-0 colour):

    means [N, 3] m; log_scales [N, 3] log m; quats [N, 4] wxyz; opacity_logits [N];
    rgb [N, 3], paint [N, 3], rgb_sun [N, 3, 3], paint_sun [N, 3, 3]: the colour (:func:`colours`) of an
    agent whose paint is P [3], lit by a sun of unit direction s [3] in its box frame, is
    ``rgb + d @ rgb_sun + (paint + d @ paint_sun) * P`` with ``d = s - MEAN_SUN`` (clamped to [0, 1]).

Why these terms: the town paints each agent's body with a colour hashed from its track id
(:func:`jwmsim.town.mesh.agent_paint`; the oracle's AGENT_PAINT material multiplies the albedo by it), and
the shaded colour is affine in that paint (albedo x light, then a fixed gloss and haze mix). The sun's
direction relative to the agent (the town's sun, the agent's yaw) decides which side is lit; a colour linear
in that direction is the first-order (Lambert's clamped cosine, to first order) relighting. The builder fits
all terms on renders of several paints and sun directions, so an asset wears the paint the oracle gives the
same track id and is lit from where the town's sun is (the sensors read the sun from the log's
``extra.sun_direction``; without it the constant terms, the average over the sun's azimuth, are drawn).
Measured on held-out views (deer, 1,500 Gaussians): 20.4 dB inside the mask relit, 15.7 dB with the average.

An index entry: ``file``; ``code`` (:class:`jwmsim.datatypes.AgentType`); ``box`` [3] (length, width,
height) m it was built for; ``gaussians``; ``built`` (method, views, iterations, seconds, settings, UTC
time); ``heldout`` (PSNR inside the oracle's instance mask and alpha IoU on views the fit never saw).

Which asset an agent gets (:meth:`AssetLibrary.kind_for`): the kinds of its class code, the one whose box is
nearest in log-size to the agent's box. That is how a horse, a deer and a dog (all ``ANIMAL``) and a car, a
truck and a bus (all ``VEHICLE``) are told apart without carrying the preset name through the simulator:
each preset's box is its signature (:data:`jwmsim.inject.AGENT_PRESETS`), and a scenario's own ``size``
still lands on the nearest shape. The asset is then scaled per axis to the agent's exact box (the
covariances are rescaled exactly, :func:`scale_gaussians`), as the oracle scales its unit-box meshes.

Loading uses safetensors only (never pickle). A missing or corrupt library raises :class:`AssetError`
naming the file and the fix (``jwmsim assets build``). How the shipped library was built, and what it does
not do (shadows, gloss towards the real sky, WorldRec-reconstructed vehicles):
:mod:`jwmsim.assets.build` and ``jwmsim/assets/data/README.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

ASSET_FORMAT = "jwmsim.asset"
INDEX_FORMAT = "jwmsim.assets"
VERSION = 1
FIELDS = ("means", "log_scales", "quats", "opacity_logits", "rgb", "paint", "rgb_sun", "paint_sun")
_SHAPE = {"means": (3,), "log_scales": (3,), "quats": (4,), "opacity_logits": (), "rgb": (3,), "paint": (3,),
          "rgb_sun": (3, 3), "paint_sun": (3, 3)}
MEAN_SUN = (0.0, 0.0, 0.7071)
"""[3] the sun direction the constant colour terms stand for (the mean over azimuth at 45 deg elevation)."""


def colours(t: dict, paint, sun_box=None):
    """[N, 3] colours in [0, 1] of asset Gaussians ``t`` for paint [3] (or [N, 3]) and the sun direction in
    the BOX frame sun_box [3] (unit; None: unknown, the average look):
    ``rgb + (s - MEAN_SUN) @ rgb_sun + (paint + (s - MEAN_SUN) @ paint_sun) * P``."""
    import torch

    c = t["rgb"] + t["paint"] * paint
    if sun_box is not None:
        d = torch.as_tensor(np.asarray(sun_box, np.float64) - MEAN_SUN, dtype=t["rgb"].dtype)
        c = c + torch.einsum("k,nkc->nc", d, t["rgb_sun"]) + torch.einsum("k,nkc->nc", d, t["paint_sun"]) * paint
    return c.clamp(0.0, 1.0)
FIX = "rebuild it with `jwmsim assets build out=DIR` (the shipped default: `jwmsim assets build`)"


class AssetError(ValueError):
    """A missing, corrupt or incomplete asset library; the message names the file and the fix."""


def default_library_dir() -> Path:
    """The shipped library (``jwmsim/assets/data``)."""
    return Path(str(resources.files("jwmsim.assets").joinpath("data")))


@dataclass
class Asset:
    """One kind's Gaussians (float32 torch tensors, box frame, see the module docstring) and its box [3] m."""

    kind: str
    code: int
    box: np.ndarray
    tensors: dict

    def __len__(self) -> int:
        return int(self.tensors["means"].shape[0])


def read_asset(path: str | Path) -> dict:
    """The tensors of one asset file (float32), checked; AssetError naming the file otherwise."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise AssetError(f"asset file {path} is missing; {FIX}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated / foreign files
        raise AssetError(f"asset file {path} is not readable ({type(e).__name__}: {e}); {FIX}") from None
    if meta.get("format") != ASSET_FORMAT:
        raise AssetError(f"{path} is not a jwmsim asset file (format {meta.get('format')!r}); {FIX}")
    missing = [k for k in FIELDS if k not in t]
    if missing:
        raise AssetError(f"asset file {path} lacks {missing}; {FIX}")
    n = t["means"].shape[0]
    for k in FIELDS:
        want = (n, *_SHAPE[k])
        if tuple(t[k].shape) != want:
            raise AssetError(f"asset file {path}: {k} has shape {tuple(t[k].shape)}, want {want}; {FIX}")
    t = {k: t[k].float() for k in FIELDS}
    if not all(bool(v.isfinite().all()) for v in t.values()):
        raise AssetError(f"asset file {path} holds NaN or inf; {FIX}")
    return t


class AssetLibrary:
    """An asset library folder (module docstring): ``AssetLibrary.load(path=None)`` reads the index and every
    kind's file (a few hundred kB in all), so later lookups never touch the disk."""

    def __init__(self, root: Path, index: dict, assets: dict[str, Asset]):
        self.root, self.index, self.assets = root, index, assets
        self.aliases = dict(index.get("aliases", {}))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "AssetLibrary":
        root = Path(path) if path is not None else default_library_dir()
        idx_path = root / "index.json"
        if not idx_path.is_file():
            raise AssetError(f"asset library {root} has no index.json; {FIX}")
        try:
            index = json.loads(idx_path.read_text())
        except (OSError, ValueError) as e:
            raise AssetError(f"asset index {idx_path} is not readable JSON ({e}); {FIX}") from None
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("kinds"), dict):
            raise AssetError(f"{idx_path} is not a jwmsim asset index (want format {INDEX_FORMAT!r} and 'kinds'); {FIX}")
        if int(index.get("version", 0)) != VERSION:
            raise AssetError(f"{idx_path} has version {index.get('version')!r}, this jwmsim reads {VERSION}; {FIX}")
        assets = {}
        for kind, e in index["kinds"].items():
            try:
                box = np.asarray(e["box"], np.float64)
                code = int(e["code"])
                file = str(e["file"])
            except (KeyError, TypeError, ValueError):
                raise AssetError(f"{idx_path}: entry {kind!r} lacks file / code / box; {FIX}") from None
            if box.shape != (3,) or not np.all(box > 0):
                raise AssetError(f"{idx_path}: entry {kind!r} has box {e['box']!r}, want 3 lengths > 0 m; {FIX}")
            assets[kind] = Asset(kind, code, box, read_asset(root / file))
        if not assets:
            raise AssetError(f"asset library {root} holds no kinds; {FIX}")
        return cls(root, index, assets)

    @property
    def kinds(self) -> list[str]:
        return sorted(self.assets)

    def get(self, kind: str) -> Asset:
        """The asset of ``kind`` (a built kind or an alias such as ``vehicle`` -> ``car``)."""
        k = self.aliases.get(kind, kind)
        if k not in self.assets:
            raise AssetError(f"no asset {kind!r} in library {self.root}; it has {', '.join(self.kinds)} "
                             f"(aliases {self.aliases}); build it with `jwmsim assets build kinds=[{kind}]`")
        return self.assets[k]

    def kind_for(self, code: int, size: Sequence[float]) -> str | None:
        """The kind for an agent of class ``code`` and box ``size`` (length, width, height) m: of the kinds
        with that code, the one whose box is nearest in summed |log ratio| (None: the library has none)."""
        s = np.log(np.maximum(np.asarray(size, np.float64)[:3], 1e-3))
        best, cost = None, math.inf
        for k in self.kinds:
            a = self.assets[k]
            if a.code != int(code):
                continue
            c = float(np.abs(s - np.log(a.box)).sum())
            if c < cost:
                best, cost = k, c
        return best


def scale_gaussians(t: dict, k: np.ndarray) -> dict:
    """Gaussians (box frame) stretched by per-axis factors k [3]: means scaled, covariances ``D Sigma D``
    (D = diag(k)) re-decomposed into scales and a rotation. Exact for any k > 0 (isotropic k only shifts the
    log-scales). Returns new tensors."""
    import torch

    from jwmsim import geometry

    k = np.asarray(k, np.float64)
    out = dict(t)
    kt = torch.as_tensor(k, dtype=t["means"].dtype)
    out["means"] = t["means"] * kt
    if np.allclose(k, k[0], rtol=1e-6):
        out["log_scales"] = t["log_scales"] + math.log(float(k[0]))
        return out
    q = torch.nn.functional.normalize(t["quats"].double(), dim=-1)
    R = torch.as_tensor(geometry.quat_to_rotmat(q.numpy()))
    s2 = torch.exp(2.0 * t["log_scales"].double())
    cov = R @ torch.diag_embed(s2) @ R.transpose(1, 2)
    D = torch.as_tensor(k)
    cov = D[None, :, None] * cov * D[None, None, :]
    ev, vec = torch.linalg.eigh(cov)
    vec = torch.where(torch.linalg.det(vec)[:, None, None] < 0, vec * torch.tensor([1.0, 1.0, -1.0]), vec)
    out["log_scales"] = (0.5 * torch.log(ev.clamp_min(1e-16))).to(t["log_scales"].dtype)
    out["quats"] = torch.as_tensor(geometry.rotmat_to_quat(vec.numpy()), dtype=t["quats"].dtype)
    return out


def asset_gaussians(library: AssetLibrary, ids: Sequence[int], codes: Sequence[int], sizes: np.ndarray,
                    yaws: Sequence[float] | None = None, sun: Sequence[float] | None = None, device=None) -> dict | None:
    """Library Gaussians for agents: ids [A] track ids, codes [A] class codes, sizes [A, 3] boxes (length,
    width, height) m, yaws [A] rad and sun [3] the world's unit sun direction (both needed to light the asset
    as the town lights the agent; either None: the average look). Returns the dict
    :func:`jwmsim.worldrec.fusion.place_tracked` takes, in BOX frames -- means, quats, log_scales,
    opacity_logits, rgb (the paint of each track id applied) and track [N] (the agent's id) -- or None when no
    agent has an asset. Agents whose class has no kind in the library are skipped."""
    import torch

    from jwmsim.town.mesh import agent_paint

    sizes = np.asarray(sizes, np.float64).reshape(-1, 3)
    ids = np.asarray(ids).reshape(-1)
    codes = np.asarray(codes).reshape(-1)
    yaws = None if yaws is None else np.asarray(yaws, np.float64).reshape(-1)
    sun = None if sun is None else np.asarray(sun, np.float64).reshape(3)
    parts = []
    for i, (tid, code, size) in enumerate(zip(ids, codes, sizes)):
        kind = library.kind_for(int(code), size)
        if kind is None:
            continue
        a = library.assets[kind]
        t = scale_gaussians(a.tensors, size / a.box)
        paint = torch.as_tensor(agent_paint([int(tid)])[0], dtype=t["rgb"].dtype)
        sun_box = None
        if sun is not None and yaws is not None:  # the world's sun in this agent's box frame: Rz(-yaw) sun
            c, s = math.cos(yaws[i]), math.sin(yaws[i])
            sun_box = np.array([c * sun[0] + s * sun[1], -s * sun[0] + c * sun[1], sun[2]])
        n = len(a)
        parts.append({"means": t["means"], "quats": t["quats"], "log_scales": t["log_scales"],
                      "opacity_logits": t["opacity_logits"], "rgb": colours(t, paint, sun_box),
                      "track": torch.full((n,), int(tid), dtype=torch.long)})
    if not parts:
        return None
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


__all__ = ["AssetError", "Asset", "AssetLibrary", "asset_gaussians", "scale_gaussians", "read_asset", "colours",
           "default_library_dir", "ASSET_FORMAT", "INDEX_FORMAT", "FIELDS"]
