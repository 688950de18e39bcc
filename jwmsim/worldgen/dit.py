"""WorldGen's Diffusion Transformer: patches of the whole camera rig in one token sequence, per-frame
conditioning, attention that is full, causal or block-causal over frames, and a bounded KV cache.

Tokens. Each camera's latent (:mod:`.autoencoder`, Z x 24 x 40) is cut into ``patch`` x ``patch`` latent
patches (6 x 10 = 60 tokens per camera at patch 4, 180 per 3-camera frame). Each token also reads the
rendered prior's pixels under it (RGB x alpha and alpha, a 16 x 16 pixel patch: the prior enters at full
resolution without running the autoencoder's encoder) and gets a learned position and camera embedding.

Per-frame conditioning (adaLN-Zero, one modulation per frame broadcast to its tokens): the noise level
sigma of that frame, the ego motion since the previous frame (dx m, dy m, dyaw rad) and a scene-attribute
vector (:mod:`.attributes`: fog, rain, night, sun; a linear embedding kept at zero, plus the adapter MLP
the ``conditions`` stage trains on top of the frozen student, exactly zero for clear conditions). Time order enters through a rotary embedding of
the frame index on part of each attention head (relative, so a sliding KV window works at any length).

Attention masks (:func:`attention_mask`): ``full`` (bidirectional teacher), ``causal`` (a frame sees
itself and earlier frames) and ``teacher_forcing`` over [clean frames; noisy frames] (noisy frame i sees
clean frames < i and itself; clean frame i sees clean frames <= i). Online inference
(:mod:`.sampler`) keeps the keys/values of the last W clean frames and attends the new frame to them.

Budget (DESIGN.md: 4-step generation <= 0.15 s per 3-camera frame, <= 0.06 s for one camera, 2 CPU
threads). A frame costs 4 denoising forwards + 1 clean forward that fills the KV cache + one decoder
pass; token count is the cost driver. Chosen: latent patch 4 (the autoencoder's 4x downsampling makes
that 16x16 pixels: 60 tokens per camera, 180 per rig frame), width 192, depth 6, 3 heads of 64, KV
window 2 frames (360 cached keys): 4.5 M parameters, ~1.4 GFLOP per forward, ~0.4x the 256 x 8 model
DESIGN.md measured at 72 ms with 720 cached keys. What it bought: all three cameras attend to each other
in every layer, and each frame sees the two before it. Measured (``benchmarks/bench_worldgen.py
--threads 1``, 2026-12-03, the shared 2-core machine under load; results/worldgen_speed.json): a whole
4-step frame, KV pass and decoding included, 0.246 s for 3 cameras and 0.075 s for one, while the
DESIGN.md reference forward took 1.88x its quiet 31 ms; calibrated by that factor, 0.131 s (3 cameras)
and 0.040 s (1 camera): inside the goals, with ~15 % margin on 3 cameras. If a quiet run misses, the
next levers are depth 5 or a window of 1 frame (settings ``model.depth``, ``window``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiTConfig:
    """cameras: rig size. latent_channels, latent_h, latent_w: the autoencoder's latent. patch: latent
    patch side (the prior's pixel patch is 4x that). width, depth, heads: transformer size. rope_dims:
    dims per head rotated by the frame index. attr_dim: scene-attribute vector length
    (:mod:`.attributes`); attr_hidden: width of the attribute adapter's MLPs (0: no adapter, the linear
    embedding only); attr_rank: rank of its attribute-gated low-rank branch in every block's MLP (0: none).
    The ``conditions`` stage adds the adapter, see :meth:`WorldGenDiT.enable_attributes`."""

    cameras: int = 3
    latent_channels: int = 8
    latent_h: int = 24
    latent_w: int = 40
    patch: int = 4
    width: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0
    rope_dims: int = 16
    attr_dim: int = 8
    attr_hidden: int = 0
    attr_rank: int = 0

    def check(self) -> None:
        if self.latent_h % self.patch or self.latent_w % self.patch:
            raise ValueError(f"latent {self.latent_h}x{self.latent_w} is not divisible by patch {self.patch}")
        if self.width % self.heads or (self.width // self.heads) % 2 or self.rope_dims % 2 \
                or self.rope_dims > self.width // self.heads:
            raise ValueError(f"width {self.width} / heads {self.heads} / rope_dims {self.rope_dims} do not fit "
                             "(head dim even, rope_dims even and <= head dim)")

    @property
    def tokens_per_camera(self) -> int:
        return (self.latent_h // self.patch) * (self.latent_w // self.patch)

    @property
    def tokens_per_frame(self) -> int:
        return self.cameras * self.tokens_per_camera

    def to_dict(self) -> dict:
        return asdict(self)


MOTION_SCALE = (1.5, 0.3, 0.1)
"""Typical ego motion per 0.1 s frame (dx m, dy m, dyaw rad): the embedding's input normalisation."""


# ----------------------------------------------------------------------------- masks


def frame_mask(frames: torch.Tensor, clean: torch.Tensor, mode: str, window: int | None = None) -> torch.Tensor:
    """Frame-level attention mask [Fs, Fs] bool (True: query row may attend key column).

    frames [Fs] int: each sequence frame's time index; clean [Fs] bool: clean context frames (teacher
    forcing). mode: 'full' | 'causal' | 'teacher_forcing'. window: a query never sees frames more than
    ``window`` steps back (the KV cache's bound); None = unbounded.
    """
    fq, fk = frames[:, None], frames[None, :]
    if mode == "full":
        m = torch.ones(len(frames), len(frames), dtype=torch.bool, device=frames.device)
    elif mode == "causal":
        m = fk <= fq
    elif mode == "teacher_forcing":
        cq, ck = clean[:, None], clean[None, :]
        m = (ck & (fk < fq)) | (ck & cq & (fk == fq)) | (~ck & ~cq & (fk == fq))
    else:
        raise ValueError(f"attention mode must be 'full', 'causal' or 'teacher_forcing', got {mode!r}")
    if window is not None:
        m = m & (fq - fk <= int(window))
    return m


def attention_mask(frames: torch.Tensor, clean: torch.Tensor, mode: str, tokens_per_frame: int,
                   window: int | None = None) -> torch.Tensor | None:
    """Token-level mask [Fs * T, Fs * T] bool from :func:`frame_mask` (None for 'full' without window)."""
    if mode == "full" and window is None:
        return None
    m = frame_mask(frames, clean, mode, window)
    return m.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


# ----------------------------------------------------------------------------- layers


def timestep_embedding(sigma: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Sinusoidal embedding of sigma * 1000: [...] -> [..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
    a = sigma.float()[..., None] * 1000.0 * freqs
    return torch.cat([torch.cos(a), torch.sin(a)], -1)


def rope(x: torch.Tensor, pos: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotate the first ``dims`` channels of x [B, H, N, D] by angles pos [N] * freqs (rotary embedding)."""
    if dims == 0:
        return x
    half = dims // 2
    freqs = 1.0 / (100.0 ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
    a = pos.float()[:, None] * freqs  # [N, half]
    cos, sin = torch.cos(a).to(x.dtype), torch.sin(a).to(x.dtype)
    x1, x2, rest = x[..., :half], x[..., half:dims], x[..., dims:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], -1)


class Block(nn.Module):
    """Pre-norm transformer block with per-frame adaLN-Zero modulation."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        w = cfg.width
        self.heads, self.rope_dims = cfg.heads, cfg.rope_dims
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        hidden = int(w * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, w))
        self.ada = nn.Linear(w, 6 * w)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, lora: tuple | None = None):
        """x [B, Fs, T, w] tokens; c [B, Fs, w] frame conditioning; pos [Fs * T] frame index of each token;
        mask [Fs * T, M + Fs * T] or None; past: cached (k, v) [B, heads, M, d]; lora: (down, up, gate
        [B, Fs, r]) the attribute branch added to the MLP (:meth:`WorldGenDiT.enable_attributes`) or None.
        Returns (x, (k, v) of x's tokens)."""
        B, Fs, T, w = x.shape
        mod = self.ada(F.silu(c))[:, :, None]  # [B, Fs, 1, 6w]
        sh1, sc1, g1, sh2, sc2, g2 = mod.chunk(6, -1)
        h = self.norm1(x) * (1 + sc1) + sh1
        qkv = self.qkv(h.reshape(B, Fs * T, w)).reshape(B, Fs * T, 3, self.heads, w // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, heads, N, d]
        q, k = rope(q, pos, self.rope_dims), rope(k, pos, self.rope_dims)
        kv = (k, v)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = self.proj(a.transpose(1, 2).reshape(B, Fs, T, w))
        x = x + g1 * a
        m = self.norm2(x) * (1 + sc2) + sh2
        y = self.mlp(m)
        if lora is not None:
            down, up, gate = lora
            y = y + up(F.gelu(down(m), approximate="tanh") * gate[:, :, None, :])
        x = x + g2 * y
        return x, kv


class WorldGenDiT(nn.Module):
    """The WorldGen denoiser: predicts the flow-matching velocity of every frame's latents.

    See :meth:`forward` for shapes. Device-agnostic (CPU or CUDA: move it with ``.to(device)``).
    """

    def __init__(self, cfg: DiTConfig | None = None):
        super().__init__()
        self.cfg = cfg = replace(cfg) if cfg is not None else DiTConfig()  # a copy: enable_attributes edits it
        cfg.check()
        w, p, Z = cfg.width, cfg.patch, cfg.latent_channels
        self.x_embed = nn.Linear(Z * p * p, w)
        self.prior_embed = nn.Linear(4 * (4 * p) ** 2, w)
        self.pos = nn.Parameter(torch.randn(cfg.tokens_per_camera, w) * 0.02)
        self.cam = nn.Parameter(torch.randn(cfg.cameras, w) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(256, w), nn.SiLU(), nn.Linear(w, w))
        self.motion_mlp = nn.Sequential(nn.Linear(3, w), nn.SiLU(), nn.Linear(w, w))
        self.attr_embed = nn.Linear(cfg.attr_dim, w)
        nn.init.zeros_(self.attr_embed.weight)
        nn.init.zeros_(self.attr_embed.bias)
        self.attr_adapter: nn.ModuleDict | None = None
        if cfg.attr_hidden > 0:
            self.enable_attributes(cfg.attr_hidden, cfg.attr_rank)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, Z * p * p)
        for m in (self.ada_out, self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.register_buffer("motion_scale", torch.tensor(MOTION_SCALE), persistent=False)

    def enable_attributes(self, hidden: int = 256, rank: int = 0) -> nn.ModuleDict:
        """Add the attribute adapter (a module of its own: the ``conditions`` stage trains it alone):

        - ``embed``: an MLP attr [A] -> [width] added to every frame's adaLN conditioning;
        - with rank > 0, ``gate``: an MLP attr -> [depth, rank], and per block a low-rank branch
          ``up(gelu(down(h)) * gate)`` added to the block's MLP output (``down`` [width -> rank], ``up`` [rank ->
          width], no biases): token-wise, so attributes can act differently on sky, road and near surfaces.

        Both MLPs enter as ``mlp(attr) - mlp(0)``, so clear conditions (attr = 0) leave the model exactly as
        it was; ``embed``'s last layer and every ``up`` start at zero. Returns the adapter."""
        if self.attr_adapter is None:
            w, A, D = self.cfg.width, self.cfg.attr_dim, self.cfg.depth
            parts = {"embed": nn.Sequential(nn.Linear(A, hidden), nn.SiLU(), nn.Linear(hidden, w))}
            nn.init.zeros_(parts["embed"][2].weight)
            nn.init.zeros_(parts["embed"][2].bias)
            if rank > 0:
                parts["gate"] = nn.Sequential(nn.Linear(A, hidden), nn.SiLU(), nn.Linear(hidden, D * rank))
                parts["down"] = nn.ModuleList([nn.Linear(w, rank, bias=False) for _ in range(D)])
                parts["up"] = nn.ModuleList([nn.Linear(rank, w, bias=False) for _ in range(D)])
                for up in parts["up"]:
                    nn.init.zeros_(up.weight)
            self.attr_adapter = nn.ModuleDict(parts).to(self.attr_embed.weight.device)
            self.cfg.attr_hidden, self.cfg.attr_rank = int(hidden), int(rank)
        return self.attr_adapter

    @property
    def attr_mlp(self) -> nn.Module | None:
        """The adapter's conditioning MLP (None without an adapter)."""
        return None if self.attr_adapter is None else self.attr_adapter["embed"]

    def _attr_lora(self, attr: torch.Tensor | None) -> list | None:
        """Per block (down, up, gate [B, Fs, rank]) of the adapter's low-rank branch, or None."""
        ad = self.attr_adapter
        if attr is None or ad is None or "gate" not in ad:
            return None
        g = (ad["gate"](attr) - ad["gate"](torch.zeros_like(attr))).chunk(self.cfg.depth, -1)
        return [(ad["down"][i], ad["up"][i], g[i]) for i in range(self.cfg.depth)]

    # -- tokens

    def _patchify(self, x: torch.Tensor, p: int) -> torch.Tensor:
        """[B, Fs, C, ch, H, W] -> [B, Fs, C * (H/p) * (W/p), ch * p * p]."""
        B, Fs, C, ch, H, W = x.shape
        x = x.reshape(B, Fs, C, ch, H // p, p, W // p, p).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return x.reshape(B, Fs, C * (H // p) * (W // p), ch * p * p)

    def _unpatchify(self, t: torch.Tensor, C: int) -> torch.Tensor:
        cfg = self.cfg
        B, Fs = t.shape[:2]
        p, hp, wp = cfg.patch, cfg.latent_h // cfg.patch, cfg.latent_w // cfg.patch
        t = t.reshape(B, Fs, C, hp, wp, cfg.latent_channels, p, p).permute(0, 1, 2, 5, 3, 6, 4, 7)
        return t.reshape(B, Fs, C, cfg.latent_channels, cfg.latent_h, cfg.latent_w)

    def frame_condition(self, sigma: torch.Tensor, motion: torch.Tensor, attr: torch.Tensor | None) -> torch.Tensor:
        """sigma [B, Fs], motion [B, Fs, 3], attr [B, Fs, A] or None -> [B, Fs, width]."""
        c = self.t_mlp(timestep_embedding(sigma)) + self.motion_mlp(motion / self.motion_scale)
        if attr is not None:
            # linear in attr without the bias, so clear conditions (attr = 0) equal no attributes at all
            c = c + F.linear(attr, self.attr_embed.weight)
            if self.attr_mlp is not None:
                c = c + (self.attr_mlp(attr) - self.attr_mlp(torch.zeros_like(attr)))
        return c

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, prior: torch.Tensor, alpha: torch.Tensor,
                motion: torch.Tensor, attr: torch.Tensor | None = None, frames: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, past: list | None = None, return_kv: bool = False,
                cams: torch.Tensor | None = None):
        """Velocity of every frame.

        x [B, Fs, C, Z, h, w] noisy latents; sigma [B, Fs] noise level per frame (0 = clean context);
        prior [B, Fs, C, 3, 4h, 4w] rendered prior RGB in [0, 1]; alpha [B, Fs, C, 1, 4h, 4w] in [0, 1];
        motion [B, Fs, 3] (dx m, dy m, dyaw rad since the previous frame); attr [B, Fs, attr_dim] or None;
        frames [Fs] time index of each frame (default 0..Fs-1; the rotary embedding); mask: token mask
        [Fs*T, M + Fs*T] bool (see :func:`attention_mask`) or None (full); past: per block the cached
        (k, v) [B, heads, M, d] of earlier frames. Returns v [B, Fs, C, Z, h, w] (and, with return_kv,
        the per-block (k, v) of this call's tokens, for the cache). cams [C'] long: which of the rig's
        cameras the C' = x.shape[2] views are (default all; a subset runs, e.g., one camera alone).
        """
        cfg = self.cfg
        B, Fs, C = x.shape[:3]
        if cams is None:
            cams = torch.arange(cfg.cameras, device=x.device)
        if x.shape[3:] != (cfg.latent_channels, cfg.latent_h, cfg.latent_w) or C != len(cams):
            raise ValueError(f"x must be [B, F, C, {cfg.latent_channels}, {cfg.latent_h}, {cfg.latent_w}] with C = "
                             f"{len(cams)} cameras, got {tuple(x.shape)}")
        if frames is None:
            frames = torch.arange(Fs, device=x.device)
        T = C * cfg.tokens_per_camera
        pri = torch.cat([prior * alpha, alpha], 3)
        h = self.x_embed(self._patchify(x, cfg.patch)) + self.prior_embed(self._patchify(pri, 4 * cfg.patch))
        h = h + (self.cam[cams][:, None, :] + self.pos[None]).reshape(T, -1)
        c = self.frame_condition(sigma, motion, attr)
        pos = frames.repeat_interleave(T)
        kvs = []
        lora = self._attr_lora(attr)
        for i, blk in enumerate(self.blocks):
            h, kv = blk(h, c, pos, mask, None if past is None else past[i], None if lora is None else lora[i])
            kvs.append(kv)
        sh, sc = self.ada_out(F.silu(c))[:, :, None].chunk(2, -1)
        v = self._unpatchify(self.out(self.norm_out(h) * (1 + sc) + sh), C)
        return (v, kvs) if return_kv else v


__all__ = ["WorldGenDiT", "DiTConfig", "attention_mask", "frame_mask", "MOTION_SCALE"]
