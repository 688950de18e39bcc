"""Training checkpoints (WorldGen, the camera policy): safetensors only (weights and optimizer state), plus a
small JSON for the step, the config and the loss history. Never unpickled.

A checkpoint ``NAME`` is three files written atomically (temporary sibling, then rename; the JSON last,
so a JSON on disk means its tensors are complete)::

    NAME.safetensors        model weights ("model.<param>") and any extra modules ("<module>.<param>")
    NAME.optim.safetensors  optimizer state, flattened ("<opt>.state.<i>.<key>"), optional
    NAME.json               {"kind", "step", "config", "history", "rebuild", ...}

A missing or corrupt file raises :class:`CheckpointError` naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or of the wrong kind; the message names the file and the fix."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flat_optim(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.state.{i}.{k}"] = v.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{i}.{k}"] = v
    return tensors, meta


def save_checkpoint(stem: str | os.PathLike, modules: dict[str, torch.nn.Module], meta: dict,
                    optimizers: dict[str, torch.optim.Optimizer] | None = None) -> Path:
    """Write checkpoint ``stem`` (see module docstring). modules: name -> module ("model" is the main one).
    meta: JSON-serialisable (kind, step, config, history, rebuild). Returns the JSON path."""
    from safetensors.torch import save_file

    stem = Path(stem)
    weights = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    _atomic(stem.with_suffix(".safetensors"), lambda p: save_file(weights, p))
    meta = dict(meta)
    if optimizers:
        tensors, om = {}, {}
        for name, opt in optimizers.items():
            t, m = _flat_optim(name, opt)
            tensors.update(t)
            om[name] = m
        _atomic(stem.with_suffix(".optim.safetensors"), lambda p: save_file(tensors, p))
        meta["optim"] = om
    text = json.dumps(meta, indent=1, sort_keys=True, default=float) + "\n"
    _atomic(stem.with_suffix(".json"), lambda p: Path(p).write_text(text))
    return stem.with_suffix(".json")


def read_meta(stem: str | os.PathLike, rebuild: str = "") -> dict:
    """The JSON of checkpoint ``stem``; CheckpointError if missing or unreadable."""
    path = Path(stem).with_suffix(".json")
    hint = f"; rebuild it with `{rebuild}`" if rebuild else ""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found{hint}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({e}){hint}") from None


def _load_tensors(path: Path, hint: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint weights not found{hint}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e}){hint}") from None


def load_checkpoint(stem: str | os.PathLike, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None, kind: str | None = None,
                    rebuild: str = "", strict: bool = True) -> dict:
    """Load checkpoint ``stem`` into ``modules`` (and ``optimizers`` if given); returns its meta.
    kind: expected meta["kind"]. Every failure is a CheckpointError naming the file and ``rebuild``."""
    stem = Path(stem)
    hint = f"; rebuild it with `{rebuild}`" if rebuild else ""
    meta = read_meta(stem, rebuild)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{stem.with_suffix('.json')}: a {meta.get('kind')!r} checkpoint, expected {kind!r}{hint}")
    tensors = _load_tensors(stem.with_suffix(".safetensors"), hint)
    for name, m in modules.items():
        sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        try:
            missing, unexpected = m.load_state_dict(sd, strict=False)
        except RuntimeError as e:  # shape mismatch: another architecture
            raise CheckpointError(f"{stem.with_suffix('.safetensors')}: {name} does not fit this model "
                                  f"({str(e).splitlines()[0]}){hint}") from None
        if strict and (missing or unexpected):
            raise CheckpointError(f"{stem.with_suffix('.safetensors')}: {name} has missing {missing[:3]} / "
                                  f"unexpected {unexpected[:3]} tensors (another model config?){hint}")
    if optimizers:
        ot = _load_tensors(stem.with_suffix(".optim.safetensors"), hint)
        for name, opt in optimizers.items():
            om = meta.get("optim", {}).get(name)
            if om is None:
                raise CheckpointError(f"{stem.with_suffix('.json')}: no optimizer state {name!r}{hint}")
            state: dict = {}
            for k, v in ot.items():
                if k.startswith(name + ".state."):
                    i, key = k[len(name) + 7:].split(".", 1)
                    state.setdefault(int(i), {})[key] = v
            for ik, v in om["scalars"].items():
                i, key = ik.split(".", 1)
                state.setdefault(int(i), {})[key] = v
            try:
                opt.load_state_dict({"state": state, "param_groups": om["param_groups"]})
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{stem.with_suffix('.optim.safetensors')}: optimizer state does not fit "
                                      f"({e}){hint}") from None
    return meta


def export_weights(stem: str | os.PathLike, dest: str | os.PathLike, module: str = "model", half: bool = True,
                   note: dict | None = None) -> Path:
    """Copy checkpoint ``stem``'s ``module`` weights (fp16 when ``half``: what the committed defaults store)
    and its JSON (step, config, loss history; no optimizer state) to checkpoint ``dest``: loadable by
    :func:`load_checkpoint` without optimizers. Returns the JSON path."""
    from safetensors.torch import save_file

    stem, dest = Path(stem), Path(dest)
    meta = read_meta(stem)
    tensors = _load_tensors(stem.with_suffix(".safetensors"), "")
    keep = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in tensors.items()
            if k.startswith(module + ".")}
    if not keep:
        raise CheckpointError(f"{stem}.safetensors has no {module!r} tensors")
    if module != "model":
        keep = {"model." + k[len(module) + 1:]: v for k, v in keep.items()}
    meta.pop("optim", None)
    meta["exported"] = {"from": str(stem), "module": module, "dtype": "float16" if half else "float32", **(note or {})}
    _atomic(dest.with_suffix(".safetensors"), lambda p: save_file(keep, p))
    text = json.dumps(meta, indent=1, sort_keys=True, default=float) + "\n"
    _atomic(dest.with_suffix(".json"), lambda p: Path(p).write_text(text))
    return dest.with_suffix(".json")


__all__ = ["save_checkpoint", "load_checkpoint", "read_meta", "export_weights", "CheckpointError"]
