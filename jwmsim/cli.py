"""The `jwmsim` command: one entry point, subcommands, hydra configs shipped in the package.

Every subcommand has a config file in ``jwmsim/conf`` (found as ``pkg://jwmsim.conf`` from any working
directory). Arguments are hydra overrides ``key=value``; ``--key value`` and positional arguments are
sugar for the same overrides (``jwmsim town make-log --seed 3 --out x`` == ``jwmsim town make-log seed=3 out=x``).
``jwmsim <command> --help`` prints the command's config with its comments.

Each setting takes the kind of its default (:func:`check_types`): booleans only true/false, yes/no, 1/0.
Exit codes: 0 done, 1 bad data or a failed run (one line ``jwmsim: error: ...`` naming the file and the
fix), 2 a bad command line (``jwmsim: ...`` naming the setting), 130 Ctrl-C, 143 SIGTERM (handled like
Ctrl-C: partial outputs removed, finished results kept).
"""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from omegaconf import DictConfig, OmegaConf


class UsageError(Exception):
    """Bad command line: the message says what is wrong and what is valid (exit code 2)."""


class SettingError(UsageError):
    """A setting has a value of the wrong kind (``seed=abc``, ``overwrite=maybe``); the message names it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by `timeout`, schedulers, `docker stop`), raised in the main thread so that cleanup
    code written for Ctrl-C (partial logs removed, results saved) runs for it too."""


TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


def parse_bool(value: object, key: str) -> bool:
    """A boolean setting, strictly: true/false, yes/no, 1/0, on/off (any case); anything else is refused
    by name, because reading ``overwrite=no`` as true destroys data."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingError(f"{key} must be true or false (also yes/no, 1/0), got {value!r}")


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
            "interactive pygame viewer of a log, or (scenario=...) drive jwmsim/JointWorld-v0 in a window"),
    Command("run", "cmd/run", "jwmsim.commands:run", (),
            "closed-loop runs of an agent over a scenario suite: per-scenario table, suite score, results JSON"),
    Command("fit-scene", "cmd/fit_scene", "jwmsim.commands:fit_scene", ("log",),
            "per-scene 3DGS optimisation baseline with held-out PSNR/SSIM curve"),
    Command("splat-render", "cmd/splat_render", "jwmsim.commands:splat_render", (),
            "render a Gaussian scene (or the synthetic street) from the rig at an ego pose"),
    Command("run-main", "cmd/main", "jwmsim.commands:run_main", (),
            "the main job of `make run` on the built-in town"),
    Command("train worldrec", "cmd/train_worldrec", "jwmsim.worldrec.commands:train_worldrec", (),
            "train WorldRec (feed-forward Gaussian reconstruction) on a town dataset's train split"),
    Command("eval worldrec", "cmd/eval_worldrec", "jwmsim.worldrec.commands:eval_worldrec", (),
            "WorldRec held-out PSNR/SSIM on the town test split, Gaussian count, timings"),
    Command("reconstruct", "cmd/reconstruct", "jwmsim.worldrec.commands:reconstruct", ("log",),
            "reconstruct a log into a Gaussian world file with WorldRec"),
    Command("assets build", "cmd/assets_build", "jwmsim.commands:assets_build", (),
            "build the Gaussian asset library of injected agents (fitted to the oracle's renders)"),
    Command("log import", "cmd/log_import", "jwmsim.commands:log_import", ("src",),
            "convert a Waymo Open Motion or Argoverse 2 scenario into a state-only DriveLog"),
    Command("train worldgen", "cmd/train_worldgen", "jwmsim.worldgen.commands:train_worldgen", (),
            "train WorldGen: stage=autoencoder|bidirectional|teacher_forcing|ode|dmd (resumable)"),
    Command("worldgen make-data", "cmd/worldgen_make_data", "jwmsim.worldgen.commands:make_data", (),
            "cache WorldGen training clips: oracle ground truth + forward-warped priors with holes"),
    Command("worldgen export", "cmd/worldgen_export", "jwmsim.worldgen.commands:export", (),
            "copy trained WorldGen stages' weights (fp16, no optimizer state) into the package defaults"),
    Command("eval worldgen", "cmd/eval_worldgen", "jwmsim.worldgen.commands:eval_worldgen", (),
            "evaluate WorldGen on town test seeds: filled/observed PSNR, SSIM, FD, stability, speed"),
    Command("train policy", "cmd/train_policy", "agents.commands:train_policy", (),
            "behaviour-clone the camera planner on oracle images of town train seeds (resumable)"),
    Command("eval sensors", "cmd/eval_sensors", "agents.commands:eval_sensors", (),
            "sensor-gap table: planners' closed-loop scores with oracle, splat and joint cameras"),
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


def _quote(override: str) -> str:
    """key=value with the value quoted when hydra's override grammar cannot lex it bare: a '#' (as in
    ``waymo:FILE#SCENARIO_ID``) or white space. Values already quoted are left alone, and so are hydra lists
    and dicts (``[{name: a, weights: b}]``) with spaces but no '#'."""
    key, eq, value = override.partition("=")
    if not eq or value[:1] in ("'", '"') or not any(c in value for c in "# \t"):
        return override
    if value[:1] in ("[", "{") and value.rstrip()[-1:] in ("]", "}") and "#" not in value:
        return override
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(cmd: Command, args: list[str]) -> list[str]:
    """Turn `--key value`, `--flag` and positional arguments into hydra overrides."""
    return [_quote(o) for o in _to_overrides(cmd, args)]


def _to_overrides(cmd: Command, args: list[str]) -> list[str]:
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

    from jwmsim.conf.structured import register

    register()  # the dataclass-defined settings (fit.*) the yamls take as defaults
    with initialize_config_module(config_module="jwmsim.conf", version_base=None):
        try:
            cfg = hydra_compose(config_name=cmd.config, overrides=overrides)
            defaults = hydra_compose(config_name=cmd.config) if overrides else cfg
        except ConfigCompositionException as e:
            base = OmegaConf.create(_config_text(cmd.config))
            from dataclasses import fields

            from jwmsim.conf.structured import STRUCTURED

            keys = [str(k) for k in base.keys() if k != "defaults"]
            text = _config_text(cmd.config)
            for g, c in STRUCTURED.items():  # settings taken from dataclasses: under GROUP. or at the top
                if f"/{g}: schema" in text:
                    keys += [f"{g}.{f.name}" for f in fields(c)]
                elif f"/{g}@_global_: schema" in text:
                    keys += [f.name for f in fields(c)]
            # omegaconf's messages run over several lines (full_key, object_type): keep the first and the key
            lines = [ln.strip() for ln in str(e.__cause__ or e).splitlines() if ln.strip()]
            where = next((ln for ln in lines[1:] if ln.startswith("full_key:")), "")
            msg = lines[0] + (f" ({where})" if where else "") if lines else str(e)
            raise UsageError(f"{msg}; valid settings of `jwmsim {cmd.name}`: {', '.join(keys)}") from None
        except Exception as e:  # hydra's override grammar errors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"cannot parse the settings {' '.join(overrides)} ({first}); write key=value, lists as "
                             f"key=[a,b,c] (see `jwmsim {cmd.name} --help`)") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"`jwmsim {cmd.name}` needs {', '.join(missing)} (e.g. {missing[0]}=...); "
                         f"see `jwmsim {cmd.name} --help`")
    check_types(cfg, defaults)
    return cfg


def check_types(cfg: DictConfig, defaults: DictConfig, prefix: str = "") -> None:
    """Give every setting the kind of its default, in place, or raise SettingError naming it.

    A bool default takes only true/false, yes/no, 1/0 (:func:`parse_bool`), so that no command can read
    `overwrite=no` as true through `bool("no")`; an int default takes an integer; a float default a
    finite number. Settings whose default is null, a string or a list are left to the command.
    """
    for key in defaults.keys():
        name = f"{prefix}{key}"
        if key not in cfg or OmegaConf.is_missing(defaults, key) or OmegaConf.is_missing(cfg, key):
            continue
        default, value = defaults[key], cfg[key]
        if isinstance(default, DictConfig):
            if isinstance(value, DictConfig):
                check_types(value, default, name + ".")
            continue
        if value is None or value == default:
            continue
        if isinstance(default, bool):
            cfg[key] = parse_bool(value, name)
        elif isinstance(default, int):
            if isinstance(value, bool) or not (isinstance(value, int) or
                                               (isinstance(value, float) and value.is_integer())):
                raise SettingError(f"{name} must be an integer, got {value!r}")
            cfg[key] = int(value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SettingError(f"{name} must be a finite number, got {value!r}")
            cfg[key] = float(value)


def _resolve(target: str) -> Callable[[DictConfig], int | None]:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    previous = _install_sigterm()
    try:
        cmd, rest = _find_command(argv)
        if "--help" in rest or "-h" in rest:
            print(f"jwmsim {cmd.name}: {cmd.help}\n")
            if cmd.positional:
                print(f"positional: {' '.join(p.upper() for p in cmd.positional)}\n")
            from jwmsim.conf.structured import settings_help

            text = _config_text(cmd.config)
            print(text.rstrip("\n"))
            extra = settings_help(text)
            if extra:
                print(extra)
            return 0
        cfg = compose(cmd, to_overrides(cmd, rest))
        code = _resolve(cmd.target)(cfg)
        return int(code or 0)
    except UsageError as e:
        print(f"jwmsim: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("jwmsim: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("jwmsim: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # PermissionError, disk full, read-only file system...: the file and the reason, in one line.
        print(f"jwmsim: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, RuntimeError) as e:
        # Domain errors carry a message naming the problem and the fix; a traceback adds nothing.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
        print(f"jwmsim: error: {msg}", file=sys.stderr)
        return 1
    finally:
        _restore_sigterm(previous)


def describe_os_error(e: OSError) -> str:
    """One line for an OSError: what failed, on which file, and what to do about it."""
    import errno

    what = e.strerror or str(e)
    where = f" ({e.filename})" if e.filename else ""
    hint = {errno.ENOSPC: "free disk space or choose another out=",
            errno.EACCES: "choose a writable out= or fix the permissions",
            errno.EPERM: "choose a writable out= or fix the permissions",
            errno.EROFS: "choose an out= on a writable file system",
            errno.EDQUOT: "free space in your quota or choose another out="}.get(e.errno or -1)
    if isinstance(e, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)) and not hint:
        return f"{what}{where}" if where else str(e)
    return f"{what}{where}" + (f"; {hint}" if hint else "")


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _install_sigterm():
    """Handle SIGTERM like Ctrl-C while a command runs (main thread only; returns the old handler)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    # `python -m jwmsim.cli` runs this file as __main__; the commands raise jwmsim.cli's exception classes,
    # so dispatch through the imported module, or `except UsageError` here would not match them.
    from jwmsim import cli as _cli

    sys.exit(_cli.main())
