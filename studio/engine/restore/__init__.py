"""GAN restoration: tiled super-resolution through spandrel (and Lanczos), LaMa inpainting."""

from studio.engine._lazy import lazy_face

__all__ = [
    "AdaptiveTiler",
    "blend_tiles",
    "describe_upscaler",
    "find_lama",
    "installed_upscalers",
    "lama_inpaint",
    "load_lama",
    "load_upscaler",
    "run_upscale",
    "spans",
    "upscale_image",
]

_EXPORTS = {
    "find_lama": "lama",
    "lama_inpaint": "lama",
    "load_lama": "lama",
    "AdaptiveTiler": "tiling",
    "blend_tiles": "tiling",
    "spans": "tiling",
    "describe_upscaler": "upscale",
    "installed_upscalers": "upscale",
    "load_upscaler": "upscale",
    "run_upscale": "upscale",
    "upscale_image": "upscale",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
