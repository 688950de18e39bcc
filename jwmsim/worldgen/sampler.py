"""Online WorldGen sampling: frame by frame, a bounded KV cache, any step count, deterministic for a seed.

Per frame: start from Gaussian noise (the sampler's own seeded generator), take ``steps`` Euler steps of
the causal student attending to the cached keys/values of the last ``window`` clean frames, then run the
student once more on the clean result at sigma = 0 to cache this frame's keys/values (as teacher forcing
trained it: clean context frames are seen at sigma = 0). The latent is decoded by the autoencoder and
composited with the prior: x = a * prior + (1 - a) * generated, where a is the prior's alpha softened at
hole borders (blurred, then limited to the alpha itself), so observed content survives and the seam is
blended rather than pasted.

:func:`generate_frame` and :class:`KVCache` are shared with DMD's self-rollout (:mod:`.stages`), so training
runs exactly the inference path. :func:`generate_reference` is the uncached equivalent (the whole
[clean past; noisy current] sequence under the teacher-forcing mask at every step), kept for tests.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from jwmsim.worldgen.dit import WorldGenDiT, attention_mask
from jwmsim.worldgen.schedule import euler_step, predict_x0, sampling_sigmas


class KVCache:
    """Keys/values of the last ``window`` clean frames, per transformer block."""

    def __init__(self, window: int):
        if int(window) < 0:
            raise ValueError(f"KV window must be >= 0 frames, got {window}")
        self.window = int(window)
        self.frames: deque = deque(maxlen=max(self.window, 1))

    def __len__(self) -> int:
        return len(self.frames) if self.window else 0

    def append(self, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if self.window:
            self.frames.append([(k.detach(), v.detach()) for k, v in kv])

    def past(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per block (k, v) [B, heads, M, d] over the cached frames (oldest first), or None if empty."""
        if not len(self):
            return None
        blocks = zip(*self.frames)
        return [(torch.cat([k for k, _ in b], 2), torch.cat([v for _, v in b], 2)) for b in blocks]

    def clear(self) -> None:
        self.frames.clear()


def generate_frame(model: WorldGenDiT, cache: KVCache, index: int, prior: torch.Tensor, alpha: torch.Tensor,
                   motion: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, attr: torch.Tensor | None = None,
                   grad_step: int | None = None, update_cache: bool = True,
                   cams: torch.Tensor | None = None) -> torch.Tensor:
    """One frame's latents [B, 1, C, Z, h, w] from noise [B, 1, C, Z, h, w].

    index: the frame's time index (rotary position). prior [B, 1, C, 3, H, W], alpha [B, 1, C, 1, H, W],
    motion [B, 1, 3], attr [B, 1, A] or None. sigmas [S + 1] from 1 to 0. grad_step: None = all steps
    without autograd; k = steps before k run without autograd, step k predicts x0 with autograd and that
    prediction is the frame (Self-Forcing's one-step gradient). The clean pass that fills the cache never
    carries gradients. cams: the rig cameras of the C views (default all).
    """
    B = noise.shape[0]
    frames = torch.tensor([int(index)], device=noise.device)
    past = cache.past()
    x = noise
    out = None
    for j in range(len(sigmas) - 1):
        s = sigmas[j].expand(B, 1).to(noise.device)
        with torch.set_grad_enabled(grad_step is not None and j == grad_step and torch.is_grad_enabled()):
            v = model(x, s, prior, alpha, motion, attr, frames=frames, past=past, cams=cams)
        if grad_step is not None and j == grad_step:
            out = predict_x0(x, v, s)
            break
        x = euler_step(x, v, s, sigmas[j + 1].expand(B, 1).to(noise.device))
    if out is None:
        out = x
    if update_cache and cache.window:
        with torch.no_grad():
            _, kv = model(out.detach(), torch.zeros(B, 1, device=noise.device), prior, alpha, motion, attr,
                          frames=frames, past=past, return_kv=True, cams=cams)
        cache.append(kv)
    return out


def rollout(model: WorldGenDiT, prior: torch.Tensor, alpha: torch.Tensor, motion: torch.Tensor, noise: torch.Tensor,
            sigmas: torch.Tensor, window: int, attr: torch.Tensor | None = None,
            grad_steps: list[int] | None = None) -> torch.Tensor:
    """Causal generation of a clip frame by frame with the KV cache: [B, F, ...] inputs -> latents
    [B, F, C, Z, h, w]. grad_steps: per frame the step that carries gradients (DMD), or None."""
    cache = KVCache(window)
    outs = []
    for k in range(noise.shape[1]):
        sl = slice(k, k + 1)
        outs.append(generate_frame(model, cache, k, prior[:, sl], alpha[:, sl], motion[:, sl], noise[:, sl], sigmas,
                                   None if attr is None else attr[:, sl],
                                   None if grad_steps is None else grad_steps[k]))
    return torch.cat(outs, 1)


@torch.no_grad()
def generate_reference(model: WorldGenDiT, prior: torch.Tensor, alpha: torch.Tensor, motion: torch.Tensor,
                       noise: torch.Tensor, sigmas: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Uncached causal generation (slow reference of :func:`rollout`): for frame k, every step runs the
    whole sequence [clean frames < k; noisy frame k] under the teacher-forcing mask."""
    B, Fn = noise.shape[:2]
    T = model.cfg.tokens_per_frame
    outs: list[torch.Tensor] = []
    for k in range(Fn):
        x = noise[:, k:k + 1]
        for j in range(len(sigmas) - 1):
            seq = torch.cat(outs + [x], 1)
            frames = torch.arange(k + 1, device=x.device)
            clean = frames < k
            sig = torch.cat([torch.zeros(B, k), sigmas[j].expand(B, 1)], 1)
            mask = attention_mask(frames, clean, "teacher_forcing", T, window)
            v = model(seq, sig, prior[:, :k + 1], alpha[:, :k + 1], motion[:, :k + 1], frames=frames, mask=mask)
            x = euler_step(x, v[:, -1:], sigmas[j].expand(B, 1), sigmas[j + 1].expand(B, 1))
        outs.append(x)
    return torch.cat(outs, 1)


def soft_alpha(alpha: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """[..., 1, H, W] alpha softened at hole borders: box blur of ``radius`` px, never above the alpha
    itself (holes stay 0; observed pixels next to a hole fade towards the generated content)."""
    if radius <= 0:
        return alpha
    a = alpha.reshape(-1, 1, *alpha.shape[-2:])
    k = 2 * radius + 1
    b = F.avg_pool2d(F.pad(a, (radius,) * 4, mode="replicate"), k, stride=1)
    return torch.minimum(a, b).reshape(alpha.shape)


def composite(gen: torch.Tensor, prior: torch.Tensor, alpha: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """a * prior + (1 - a) * gen with a = :func:`soft_alpha` (images [..., 3, H, W] in [0, 1])."""
    a = soft_alpha(alpha, radius)
    return (a * prior + (1.0 - a) * gen.clamp(0.0, 1.0)).clamp(0.0, 1.0)


class OnlineSampler:
    """Frame-by-frame generation for the joint sensor and closed-loop rollouts.

    model: causal student; autoencoder: its latent space. steps: denoising steps (4 default, any >= 1);
    window: cached past frames; shift: the schedule shift it was trained with; seed: the noise
    generator's seed (same seed and inputs = same frames); blend_radius [px]: seam softening.
    cams: which rig cameras this sampler generates (default all; e.g. [1] = the front camera alone).
    Call :meth:`reset` at an episode start, :meth:`step` per frame.

    Under scene attributes (a non-zero ``attr``: fog, rain, night, another sun; :mod:`.attributes`) the prior
    was rendered in other conditions than the ones asked for, so it cannot simply be pasted. under_attributes
    says what the frame is then:

    - ``"generation"``: the conditioned generation alone (the prior is an input only);
    - ``"residual"``: the clear frame (clear generation composited with the prior, as without attributes)
      plus the condition's effect, conditioned minus clear generation from the same noise (both in one
      batched pass, each with its own KV cache): observed detail survives, the generator's shared errors
      cancel, and only what the attributes change is taken from it;
    - ``"composite"``: the conditioned generation composited with the clear prior (the ablation that shows
      why pasting is wrong).
    """

    UNDER_ATTRIBUTES = ("generation", "residual", "composite")

    def __init__(self, model: WorldGenDiT, autoencoder, steps: int = 4, window: int = 2, shift: float = 2.0,
                 seed: int = 0, blend_radius: int = 2, device: str | torch.device = "cpu", cams=None,
                 under_attributes: str = "generation"):
        if under_attributes not in self.UNDER_ATTRIBUTES:
            raise ValueError(f"under_attributes must be one of {', '.join(self.UNDER_ATTRIBUTES)}, got "
                             f"{under_attributes!r}")
        self.model = model.eval()
        self.under_attributes = under_attributes
        self.ae = autoencoder.eval()
        self.sigmas = sampling_sigmas(steps, shift)
        self.window, self.seed, self.blend_radius = int(window), int(seed), int(blend_radius)
        self.device = torch.device(device)
        self.cams = torch.arange(model.cfg.cameras) if cams is None else torch.as_tensor(cams, dtype=torch.long)
        self.cams = self.cams.to(self.device)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = int(seed)
        self.cache = KVCache(self.window)
        self.pair_cache = KVCache(self.window)  # the batched (clear, conditioned) pair of "residual"
        self.index = 0
        self.gen = torch.Generator(device=self.device).manual_seed(self.seed)

    @torch.inference_mode()
    def step(self, prior: torch.Tensor, alpha: torch.Tensor, motion: torch.Tensor,
             attr: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """prior [C, 3, H, W] in [0, 1], alpha [C, 1, H, W] in [0, 1], motion [3] (dx m, dy m, dyaw rad)
        attr [A] scene attributes or None (clear) -> {"rgb": the frame [C, 3, H, W] (composite with the prior,
        or the generation under attributes), "generated": decoded generation [C, 3, H, W], "latent": [C, Z, h, w]}."""
        cfg = self.model.cfg
        C = len(self.cams)
        if prior.shape[0] != C or alpha.shape[0] != C:
            raise ValueError(f"prior/alpha must have the sampler's {C} cameras first, got "
                             f"{tuple(prior.shape)} / {tuple(alpha.shape)}")
        for name, t in (("prior", prior), ("alpha", alpha), ("motion", motion)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or inf")
        p, a = prior[None, None].to(self.device).float(), alpha[None, None].to(self.device).float()
        m = motion.reshape(1, 1, 3).to(self.device).float()
        noise = torch.randn((1, 1, C, cfg.latent_channels, cfg.latent_h, cfg.latent_w),
                            generator=self.gen, device=self.device)
        conditioned = attr is not None and bool((attr != 0).any())
        at = None if attr is None else attr.reshape(1, 1, -1).to(self.device).float()
        prior_d, alpha_d = prior.to(self.device), alpha.to(self.device)
        if conditioned and self.under_attributes == "residual":
            two = lambda t: torch.cat([t, t])  # noqa: E731  (clear, conditioned) share inputs and noise
            z2 = generate_frame(self.model, self.pair_cache, self.index, two(p), two(a), two(m), two(noise),
                                self.sigmas, torch.cat([torch.zeros_like(at), at]), cams=self.cams)
            self.index += 1
            g2 = self.ae.decode(z2[:, 0].flatten(0, 1)).clamp(0, 1).unflatten(0, (2, C))
            clear, gen = g2[0], g2[1]
            rgb = (composite(clear, prior_d, alpha_d, self.blend_radius) + gen - clear).clamp(0, 1)
            return {"rgb": rgb, "generated": gen, "latent": z2[1, 0]}
        z = generate_frame(self.model, self.cache, self.index, p, a, m, noise, self.sigmas, at, cams=self.cams)
        self.index += 1
        gen = self.ae.decode(z[0, 0]).clamp(0, 1)
        if conditioned and self.under_attributes == "generation":
            rgb = gen
        else:
            rgb = composite(gen, prior_d, alpha_d, self.blend_radius)
        return {"rgb": rgb, "generated": gen, "latent": z[0, 0]}


__all__ = ["KVCache", "generate_frame", "rollout", "generate_reference", "soft_alpha", "composite", "OnlineSampler"]
