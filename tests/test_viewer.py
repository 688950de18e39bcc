import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no screen on CI

from jwmsim.log import read_log, write_log
from jwmsim.log.synthetic import synthetic_log
from jwmsim.viewer import LogViewer


@pytest.fixture()
def log_dir(tmp_path):
    log, frames = synthetic_log(num_frames=6)
    return write_log(tmp_path / "log", log, frames, eval_frames={"shift_+1m": frames})


def test_viewer_keys_and_frames(log_dir):
    import pygame

    v = LogViewer(read_log(log_dir), scale=2, log_dir=log_dir)
    img = v.frame_image(0)
    assert img.dtype == np.uint8 and img.shape[0] == 2 * (24 + 2 + 24)
    drawn = v.run(max_frames=4, keys=[pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_d, pygame.K_s])
    assert drawn == 4 and v.t == 2 and not v.show_depth
    assert (log_dir.parent / "log_t000002.png").exists()
    assert v.frame_image(2).shape[0] == 2 * 24  # depth hidden
    v.t = 0
    assert v.run(keys=[pygame.K_END, pygame.K_q]) == 1 and v.t == 5


def test_viewer_rejects_unknown_rig(log_dir):
    with pytest.raises(ValueError, match="rigs: main, shift_\\+1m"):
        LogViewer(read_log(log_dir), rig="nope")


def test_viewer_without_a_display_says_so(log_dir, monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the DISPLAY check is for Linux")
    for var in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="no display.*jwmsim log video"):
        LogViewer(read_log(log_dir)).run(max_frames=1)
