"""Compile numba kernels at install time (`make` calls this) so no user run pays the JIT cost."""

from __future__ import annotations

import importlib


def main() -> None:
    for name in ("jwmsim.splat.cpu",):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        warm = getattr(mod, "precompile", None)
        if warm is not None:
            warm()


if __name__ == "__main__":
    main()
