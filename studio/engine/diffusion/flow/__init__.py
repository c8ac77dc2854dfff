"""The flow-matching families (FLUX.1, FLUX.2 klein, Chroma, Z-Image, SD 3.5, Qwen-Image):
recognition and loading of folders and single files, the job handlers, crop-to-mask
inpainting, ControlNets and x0 previews. Reached through ``studio.engine.diffusion`` (its
public face) and ``route``."""
