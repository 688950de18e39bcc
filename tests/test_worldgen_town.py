"""WorldGen on a real (short) town log: clip sampling with the oracle and the rollout curve."""

import numpy as np
import pytest
import torch

from jwmsim.worldgen.autoencoder import AEConfig, Autoencoder
from jwmsim.worldgen.data import ClipParams, make_clips
from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT
from jwmsim.worldgen.evaluate import plot_curves, rollout_curve
from jwmsim.worldgen.sampler import OnlineSampler


@pytest.fixture(scope="module")
def test_log(tmp_path_factory):
    from jwmsim.town.make_log import make_log

    out = tmp_path_factory.mktemp("wg") / "log2000"
    make_log(2000, 1.0, out, eval_shifts=(), progress=False)
    return out


def test_make_clips_from_a_town_log(test_log):
    p = ClipParams(frames=2, max_lookahead=2, n_sources=2, source_stride=2, p_on_path=0.0)
    c = make_clips(test_log, 2, p, seed=0)
    assert c["gt"].shape == (2, 2, 3, 96, 160, 3) and c["alpha"].shape == (2, 2, 3, 96, 160)
    assert c["pose"].shape == (2, 2, 4, 4) and c["depth"].dtype == np.float16
    assert (np.abs(c["offset"][:, 0]) <= 2.0).all() and (np.abs(c["offset"][:, 1]) <= np.radians(10) + 1e-6).all()
    # Off the logged path the prior has holes, but most of the view is observed.
    frac = (c["alpha"] > 127).mean()
    assert 0.3 < frac < 1.0
    assert (c["prior"][c["alpha"] == 0] == 0).all()
    again = make_clips(test_log, 2, p, seed=0)
    assert np.array_equal(again["gt"], c["gt"]) and np.array_equal(again["prior"], c["prior"])


def test_worldrec_prior_is_a_second_source(test_log):
    """prior=worldrec: the committed WorldRec's render of the keyframes recorded before each target frame."""
    from jwmsim.worldgen.data import WorldRecPrior

    p = ClipParams(frames=2, max_lookahead=2, n_sources=2, source_stride=2, p_on_path=1.0)
    c = make_clips(test_log, 1, p, seed=0, prior_fn=WorldRecPrior())
    assert c["prior"].shape == (1, 2, 3, 96, 160, 3) and c["prior"].dtype == np.uint8
    cover = c["alpha"].mean() / 255.0
    assert 0.5 < cover <= 1.0  # on the logged path the reconstructed world covers most of the view
    err = np.abs(c["prior"].astype(float) - c["gt"].astype(float)).mean()
    assert err < 40.0  # close to the oracle's view (a random image would be ~80 grey levels off)


def test_rollout_curve_runs_and_plots(test_log, tmp_path):
    torch.manual_seed(0)
    model = WorldGenDiT(DiTConfig(width=32, depth=1, heads=2, rope_dims=8))
    ae = Autoencoder(AEConfig(width=16))
    s = OnlineSampler(model, ae, steps=2, window=1)
    joint = rollout_curve(test_log, s, shift_m=1.0, frames=3, with_prior=True)
    gen = rollout_curve(test_log, s, shift_m=1.0, frames=3, with_prior=False)
    assert len(joint["psnr"]) == 3 and np.isfinite(joint["psnr"]).all()
    # An untrained generator is noise: the prior is what makes the joint rollout close to the oracle.
    assert np.mean(joint["psnr"]) > np.mean(gen["psnr"]) + 3.0
    png = plot_curves({"joint": joint["psnr"], "gen": gen["psnr"]}, tmp_path / "c.png")
    assert png.stat().st_size > 1000
