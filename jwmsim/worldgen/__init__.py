"""WorldGen: a few-step causal video diffusion model that completes each new camera frame online,
conditioned on a rendered prior RGB and its alpha (what the Gaussian world could not show).

Modules (data flow: town logs -> clips -> autoencoder -> DiT stages -> online sampler):

- :mod:`.data`: training clips from the town: oracle ground truth at on/off-path poses, priors by
  z-buffered forward warping of earlier logged frames (holes: alpha = 0); uint8 npz cache.
- :mod:`.autoencoder`: the project's own 4x conv autoencoder (96x160 -> 8 x 24x40 latents).
- :mod:`.dit`: the Diffusion Transformer over the whole rig's latent patches; masks; KV cache inputs.
- :mod:`.schedule`: flow matching (rectified flow, velocity prediction, shifted schedule).
- :mod:`.stages`: bidirectional, teacher_forcing, ode, dmd losses.
- :mod:`.sampler`: online frame-by-frame generation with a bounded KV cache; prior compositing.
- :mod:`.train`, :mod:`.checkpoint`: resumable training, safetensors checkpoints.
- :mod:`.evaluate`: the test-seed table, the 600-frame rollout curves.

Heavy modules are imported on use; ``import jwmsim.worldgen`` is cheap.
"""
