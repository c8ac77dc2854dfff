"""Stable Diffusion 1.x, 2.x and SDXL: the UNet pipelines (txt2img, img2img, ControlNet,
inpainting, Hires. fix), A1111 samplers and schedule types, prompt weighting and textual
inversion. Reached through ``studio.engine.diffusion`` (its public face) and ``route``."""
