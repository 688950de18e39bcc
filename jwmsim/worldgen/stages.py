"""WorldGen's four training stages as losses over a batch of clips.

A batch is a dict of tensors: z [B, F, C, Z, h, w] clean latents of the oracle frames (autoencoder
space), prior [B, F, C, 3, H, W] and alpha [B, F, C, 1, H, W] (the rendered prior, [0, 1]), motion
[B, F, 3] (dx m, dy m, dyaw rad). Flow matching conventions: :mod:`.schedule`.

- ``bidirectional``: full attention over the clip, one noise level per clip; the 50-step teacher.
- ``teacher_forcing``: the sequence [clean frames; noisy frames] under the block-causal mask, an
  independent noise level per noisy frame; loss on the noisy frames' velocity.
- ``ode``: the teacher's 50-step Euler trajectories from noise (:func:`teacher_trajectory`); the causal
  student, given the teacher's endpoints as clean context, maps x at each of the 4 kept noise levels
  straight to the teacher's endpoint (CausVid's ODE initialisation).
- ``dmd``: the student generates the clip causally from its own outputs with the KV cache (self-rollout,
  the inference path of :mod:`.sampler`, gradients through one random denoising step per frame); the
  frozen teacher gives the real score and a fake-score critic, trained online on the student's samples
  with the ordinary flow loss, the fake one; the generator loss 0.5 * ||x - sg(x - g)||^2 with
  g = (x0_fake - x0_real) / mean|x - x0_real| moves the samples towards the teacher's distribution.

After them, ``conditions`` (:func:`conditions_loss`) teaches the frozen DMD student the scene attributes
(:mod:`.attributes`): only the attribute adapter trains, on oracle frames rendered under fog, rain, night or
another sun with the clear-daylight prior, regressing the student's x0 at its own sampling levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jwmsim.worldgen.dit import WorldGenDiT, attention_mask
from jwmsim.worldgen.sampler import rollout
from jwmsim.worldgen.schedule import add_noise, euler_step, predict_x0, sampling_sigmas, shift_sigma

STAGES = ("bidirectional", "teacher_forcing", "ode", "dmd", "conditions")


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Noise from ``generator`` (which may live on the CPU) on ``device``."""
    g_dev = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=g_dev).to(device)


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    g_dev = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=g_dev).to(device)


def _cond(batch: dict, repeat: int = 1) -> tuple:
    """(prior, alpha, motion, attr) of a batch (attr None when it has none), repeated along frames."""
    p, a, m, at = batch["prior"], batch["alpha"], batch["motion"], batch.get("attr")
    if repeat > 1:
        p, a, m = torch.cat([p] * repeat, 1), torch.cat([a] * repeat, 1), torch.cat([m] * repeat, 1)
        at = None if at is None else torch.cat([at] * repeat, 1)
    return p, a, m, at


def bidirectional_loss(model: WorldGenDiT, batch: dict, shift: float = 2.0,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Flow-matching loss with full temporal attention, one sigma per clip."""
    z = batch["z"]
    B, Fn = z.shape[:2]
    sigma = shift_sigma(_rand((B, 1), generator, z.device), shift).expand(B, Fn)
    eps = _randn(z.shape, generator, z.device)
    v = model(add_noise(z, eps, sigma), sigma, *_cond(batch))
    loss = F.mse_loss(v, eps - z)
    return loss, {"loss": float(loss.detach())}


def teacher_forcing_inputs(z_clean: torch.Tensor, x_noisy: torch.Tensor, sigma: torch.Tensor, batch: dict,
                           window: int | None = None) -> dict:
    """Model inputs for [clean; noisy] (2F frames) under the block-causal mask."""
    Fn = z_clean.shape[1]
    frames = torch.cat([torch.arange(Fn), torch.arange(Fn)]).to(z_clean.device)
    clean = torch.cat([torch.ones(Fn, dtype=torch.bool), torch.zeros(Fn, dtype=torch.bool)]).to(z_clean.device)
    return {"x": torch.cat([z_clean, x_noisy], 1), "sigma": torch.cat([torch.zeros_like(sigma), sigma], 1),
            "frames": frames, "clean": clean, "window": window}


def _run_tf(model: WorldGenDiT, inp: dict, batch: dict) -> torch.Tensor:
    """Velocity of the noisy half of a teacher-forcing sequence [B, F, ...]."""
    mask = attention_mask(inp["frames"], inp["clean"], "teacher_forcing", model.cfg.tokens_per_frame, inp["window"])
    v = model(inp["x"], inp["sigma"], *_cond(batch, 2), frames=inp["frames"], mask=mask)
    return v[:, v.shape[1] // 2:]


def teacher_forcing_loss(model: WorldGenDiT, batch: dict, shift: float = 2.0, window: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Flow-matching loss of the causal model on [clean; noisy] with a sigma per noisy frame."""
    z = batch["z"]
    B, Fn = z.shape[:2]
    sigma = shift_sigma(_rand((B, Fn), generator, z.device), shift)
    eps = _randn(z.shape, generator, z.device)
    v = _run_tf(model, teacher_forcing_inputs(z, add_noise(z, eps, sigma), sigma, batch, window), batch)
    loss = F.mse_loss(v, eps - z)
    return loss, {"loss": float(loss.detach())}


@torch.no_grad()
def teacher_trajectory(teacher: WorldGenDiT, batch: dict, steps: int = 50, shift: float = 2.0,
                       keep: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict:
    """Run the bidirectional teacher's Euler sampler over whole clips from noise.

    keep [K] noise levels to store (each snapped to the nearest level of the 50-step grid).
    Returns {"x0": endpoints [B, F, ...], "xs": [K, B, F, ...] states at the kept levels, "sigmas": [K]}.
    """
    shape = batch["prior"].shape[:3] + (teacher.cfg.latent_channels, teacher.cfg.latent_h, teacher.cfg.latent_w)
    B, Fn = shape[:2]
    dev = batch["prior"].device
    grid = sampling_sigmas(steps, shift).to(dev)
    keep = sampling_sigmas(4, shift)[:-1] if keep is None else keep
    idx = [int(torch.argmin((grid - float(s)).abs())) for s in keep]
    x = _randn(shape, generator, dev)
    xs = {}
    cond = _cond(batch)
    for j in range(steps):
        if j in idx:
            xs[j] = x
        s = grid[j].expand(B, Fn)
        x = euler_step(x, teacher(x, s, *cond), s, grid[j + 1].expand(B, Fn))
    return {"x0": x, "xs": torch.stack([xs[j] for j in idx]), "sigmas": grid[idx]}


def ode_loss(student: WorldGenDiT, batch: dict, traj: dict, window: int | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Regress the causal student's x0 prediction from a random kept level per frame onto the
    teacher's endpoint, with the teacher's endpoints as clean context (teacher-forcing mask)."""
    x0 = traj["x0"]
    K = traj["xs"].shape[0]
    B, Fn = x0.shape[:2]
    k = (_rand((B, Fn), generator, x0.device) * K).long().clamp_max(K - 1)
    xk = traj["xs"][k, torch.arange(B, device=x0.device)[:, None], torch.arange(Fn, device=x0.device)[None, :]]
    sigma = traj["sigmas"][k]
    v = _run_tf(student, teacher_forcing_inputs(x0, xk, sigma, batch, window), batch)
    loss = F.mse_loss(predict_x0(xk, v, sigma), x0)
    return loss, {"loss": float(loss.detach())}


def dmd_step(student: WorldGenDiT, teacher: WorldGenDiT, critic: WorldGenDiT, batch: dict, steps: int = 4,
             shift: float = 2.0, window: int = 2, generator: torch.Generator | None = None,
             min_sigma: float = 0.02, max_sigma: float = 0.98) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One DMD evaluation: (generator loss, critic loss, stats). The caller steps the critic's optimizer
    every call and the generator's every few calls; the teacher is frozen.

    The student self-rolls the clip out (:func:`.sampler.rollout`), one random denoising step per frame
    carrying gradients. The DMD gradient is measured at a random noise level shared by the clip (the
    teacher and critic are bidirectional models of whole clips).
    """
    shape = batch["prior"].shape[:3] + (student.cfg.latent_channels, student.cfg.latent_h, student.cfg.latent_w)
    B, Fn = shape[:2]
    dev = batch["prior"].device
    sigmas = sampling_sigmas(steps, shift).to(dev)
    noise = _randn(shape, generator, dev)
    grad_steps = (_rand((Fn,), generator, "cpu") * steps).long().clamp_max(steps - 1).tolist()
    x = rollout(student, batch["prior"], batch["alpha"], batch["motion"], noise, sigmas, window,
                grad_steps=grad_steps)
    cond = _cond(batch)
    u = _rand((B, 1), generator, dev) * (max_sigma - min_sigma) + min_sigma
    sigma = shift_sigma(u, shift).expand(B, Fn)
    eps = _randn(shape, generator, dev)
    with torch.no_grad():
        xt = add_noise(x.detach(), eps, sigma)
        x0_real = predict_x0(xt, teacher(xt, sigma, *cond), sigma)
        x0_fake = predict_x0(xt, critic(xt, sigma, *cond), sigma)
        norm = (x.detach() - x0_real).abs().mean(dim=tuple(range(1, x.ndim)), keepdim=True).clamp_min(1e-4)
        grad = (x0_fake - x0_real) / norm
    gen_loss = 0.5 * F.mse_loss(x, (x - grad).detach())
    # The critic learns the student's current distribution with the ordinary flow-matching loss.
    cs = shift_sigma(_rand((B, 1), generator, dev), shift).expand(B, Fn)
    ceps = _randn(shape, generator, dev)
    xd = x.detach()
    critic_loss = F.mse_loss(critic(add_noise(xd, ceps, cs), cs, *cond), ceps - xd)
    stats = {"gen_loss": float(gen_loss.detach()), "critic_loss": float(critic_loss.detach()),
             "dmd_dist": float((x0_fake - x0_real).pow(2).mean())}
    return gen_loss, critic_loss, stats


def conditions_loss(model: WorldGenDiT, batch: dict, steps: int = 4, shift: float = 2.0, window: int | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Teacher-forced x0 regression at the student's own sampling levels (one of ``steps`` per frame, the
    first being pure noise), on clips whose ground truth z was rendered under the batch's ``attr``."""
    z = batch["z"]
    B, Fn = z.shape[:2]
    levels = sampling_sigmas(steps, shift)[:-1].to(z.device)
    k = (_rand((B, Fn), generator, z.device) * steps).long().clamp_max(steps - 1)
    sigma = levels[k]
    eps = _randn(z.shape, generator, z.device)
    xn = add_noise(z, eps, sigma)
    v = _run_tf(model, teacher_forcing_inputs(z, xn, sigma, batch, window), batch)
    loss = F.mse_loss(predict_x0(xn, v, sigma), z)
    return loss, {"loss": float(loss.detach())}


__all__ = ["STAGES", "conditions_loss", "bidirectional_loss", "teacher_forcing_loss", "teacher_forcing_inputs", "teacher_trajectory",
           "ode_loss", "dmd_step"]
