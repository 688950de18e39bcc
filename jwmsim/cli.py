"""The `jwmsim` command: one entry point, subcommands, hydra configs shipped in the package.

Every subcommand has a config file in ``jwmsim/conf`` (found as ``pkg://jwmsim.conf`` from any working
directory). Arguments are hydra overrides ``key=value``; ``--key value`` and positional arguments are
sugar for the same overrides (``jwmsim town make-log --seed 3 --out x`` == ``jwmsim town make-log seed=3 out=x``).
``jwmsim <command> --help`` prints the command's config with its comments.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from omegaconf import DictConfig, OmegaConf


class UsageError(Exception):
    """Bad command line: the message says what is wrong and what is valid."""


@dataclass
class Command:
    name: str  # "town make-log"
    config: str  # config name under jwmsim/conf, e.g. "cmd/town_make_log"
    target: str  # "module:function" taking the composed DictConfig
    positional: tuple[str, ...] = ()
    help: str = ""


COMMANDS = [
    Command("town make-log", "cmd/town_make_log", "jwmsim.commands:town_make_log", (),
            "generate one procedural-town DriveLog (oracle-rendered cameras)"),
    Command("town dataset", "cmd/town_dataset", "jwmsim.commands:town_dataset", (),
            "generate N town logs with a fixed train/val/test split by seed"),
    Command("log validate", "cmd/log_validate", "jwmsim.commands:log_validate", ("log",),
            "report every problem of a DriveLog"),
    Command("log show", "cmd/log_show", "jwmsim.commands:log_show", ("log",),
            "print a log summary and write a contact sheet PNG"),
    Command("log video", "cmd/log_video", "jwmsim.commands:log_video", ("log",),
            "encode a log's camera frames as an mp4"),
    Command("view", "cmd/view", "jwmsim.commands:view", ("log",),
            "interactive pygame viewer of a log: cameras, depth, bird's-eye view"),
    Command("run", "cmd/run", "jwmsim.commands:run", (),
            "closed-loop runs of an agent over a scenario suite: per-scenario table, suite score, results JSON"),
    Command("fit-scene", "cmd/fit_scene", "jwmsim.commands:fit_scene", ("log",),
            "per-scene 3DGS optimisation baseline with held-out PSNR/SSIM curve"),
    Command("splat-render", "cmd/splat_render", "jwmsim.commands:splat_render", (),
            "render a Gaussian scene (or the synthetic street) from the rig at an ego pose"),
    Command("run-main", "cmd/main", "jwmsim.commands:run_main", (),
            "the main job of `make run` on the built-in town"),
    Command("train worldgen", "cmd/train_worldgen", "jwmsim.worldgen.commands:train_worldgen", (),
            "train WorldGen: stage=autoencoder|bidirectional|teacher_forcing|ode|dmd (resumable)"),
    Command("worldgen make-data", "cmd/worldgen_make_data", "jwmsim.worldgen.commands:make_data", (),
            "cache WorldGen training clips: oracle ground truth + forward-warped priors with holes"),
    Command("eval worldgen", "cmd/eval_worldgen", "jwmsim.worldgen.commands:eval_worldgen", (),
            "evaluate WorldGen on town test seeds: filled/observed PSNR, SSIM, FD, stability, speed"),
]


def register(cmd: Command) -> None:
    """Add a subcommand (used by stages that ship their own commands)."""
    COMMANDS.append(cmd)


def _config_text(config: str) -> str:
    return resources.files("jwmsim.conf").joinpath(config + ".yaml").read_text()


def _usage() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = ["usage: jwmsim <command> [key=value ...] [--key value ...]", "", "commands:"]
    lines += [f"  {c.name:<{width}}  {c.help}" for c in COMMANDS]
    lines += ["", "`jwmsim <command> --help` shows a command's settings."]
    return "\n".join(lines)


def _find_command(argv: list[str]) -> tuple[Command, list[str]]:
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        for cmd in COMMANDS:
            if cmd.name == name:
                return cmd, argv[n_words:]
    valid = ", ".join(c.name for c in COMMANDS)
    raise UsageError(f"unknown command {' '.join(argv[:2])!r}; valid commands: {valid}")


def to_overrides(cmd: Command, args: list[str]) -> list[str]:
    """Turn `--key value`, `--flag` and positional arguments into hydra overrides."""
    overrides: list[str] = []
    positional = list(cmd.positional)
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            key = a[2:].replace("-", "_")
            if "=" in key:
                overrides.append(key)
            elif i + 1 < len(args) and not args[i + 1].startswith("--") and "=" not in args[i + 1]:
                overrides.append(f"{key}={args[i + 1]}")
                i += 1
            else:
                overrides.append(f"{key}=true")
        elif "=" in a:
            overrides.append(a)
        else:
            if not positional:
                raise UsageError(f"unexpected argument {a!r} for `jwmsim {cmd.name}`; settings are key=value "
                                 f"(see `jwmsim {cmd.name} --help`)")
            overrides.append(f"{positional.pop(0)}={a}")
        i += 1
    return overrides


def compose(cmd: Command, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import ConfigCompositionException

    with initialize_config_module(config_module="jwmsim.conf", version_base=None):
        try:
            cfg = hydra_compose(config_name=cmd.config, overrides=overrides)
        except ConfigCompositionException as e:
            base = OmegaConf.create(_config_text(cmd.config))
            keys = ", ".join(str(k) for k in base.keys())
            cause = e.__cause__ or e
            raise UsageError(f"{cause}\nvalid settings of `jwmsim {cmd.name}`: {keys}") from None
        except Exception as e:  # hydra's override grammar errors
            raise UsageError(f"bad override in {overrides}: {e}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"`jwmsim {cmd.name}` needs {', '.join(missing)} (e.g. {missing[0]}=...); "
                         f"see `jwmsim {cmd.name} --help`")
    return cfg


def _resolve(target: str) -> Callable[[DictConfig], int | None]:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    try:
        cmd, rest = _find_command(argv)
        if "--help" in rest or "-h" in rest:
            print(f"jwmsim {cmd.name}: {cmd.help}\n")
            if cmd.positional:
                print(f"positional: {' '.join(p.upper() for p in cmd.positional)}\n")
            print(_config_text(cmd.config))
            return 0
        cfg = compose(cmd, to_overrides(cmd, rest))
        code = _resolve(cmd.target)(cfg)
        return int(code or 0)
    except UsageError as e:
        print(f"jwmsim: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jwmsim: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as e:
        # Domain errors carry a message naming the problem and the fix; a traceback adds nothing.
        print(f"jwmsim: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
