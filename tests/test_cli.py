import subprocess
import sys

import numpy as np
import pytest

from jwmsim import cli
from jwmsim.log import write_log
from jwmsim.log.synthetic import synthetic_log


@pytest.fixture()
def log_dir(tmp_path):
    log, frames = synthetic_log(num_frames=6)
    return write_log(tmp_path / "log", log, frames, eval_frames={"shift_+1m": frames})


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("town make-log", "town dataset", "log validate", "log show"):
        assert name in out


def test_command_help_shows_settings(capsys):
    assert cli.main(["town", "make-log", "--help"]) == 0
    out = capsys.readouterr().out
    assert "seed:" in out and "seconds:" in out


def test_unknown_command(capsys):
    assert cli.main(["town", "make-lgo"]) == 2
    assert "valid commands" in capsys.readouterr().err


def test_unknown_setting_lists_valid(capsys, log_dir):
    assert cli.main(["log", "validate", str(log_dir), "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "valid settings" in err and "frames" in err


def test_missing_required(capsys):
    assert cli.main(["log", "validate"]) == 2
    assert "needs log" in capsys.readouterr().err


def test_validate_ok_and_broken(capsys, log_dir):
    assert cli.main(["log", "validate", str(log_dir)]) == 0
    assert "OK" in capsys.readouterr().out
    (log_dir / "frames" / "main" / "000003.npz").unlink()
    assert cli.main(["log", "validate", str(log_dir)]) == 1
    assert "frame files missing" in capsys.readouterr().out


def test_show_writes_contact_sheet(tmp_path, log_dir, capsys):
    import imageio.v3 as iio

    out = tmp_path / "sheet.png"
    assert cli.main(["log", "show", str(log_dir), f"out={out}", "rows=3"]) == 0
    assert "frames 6" in capsys.readouterr().out
    img = iio.imread(out)
    assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 10


def test_video(tmp_path, log_dir):
    import imageio.v2 as iio2

    out = tmp_path / "v.mp4"
    assert cli.main(["log", "video", str(log_dir), f"out={out}"]) == 0
    assert out.stat().st_size > 1000
    with iio2.get_reader(out) as r:
        assert r.count_frames() == 6


def test_console_script_from_other_dir(tmp_path, log_dir):
    # configs are found from any working directory (pkg://jwmsim.conf)
    r = subprocess.run([sys.executable, "-m", "jwmsim.cli", "log", "validate", str(log_dir)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


@pytest.mark.parametrize("argv, message", [
    (["town", "make-log", "--seed", "abc", "--out", "X"], "seed must be an integer, got 'abc'"),
    (["town", "make-log", "--seconds", "soon", "--out", "X"], "seconds must be a finite number, got 'soon'"),
    (["town", "make-log", "--seconds", "-1", "--out", "X"], "seconds must be > 0"),
    (["run", "workers=0"], "workers must be >= 1"),
    (["splat-render", "--synthetic", "-5"], "synthetic must be a positive number of Gaussians"),
])
def test_bad_numbers_name_the_setting(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2  # a bad command line, not bad data
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()
