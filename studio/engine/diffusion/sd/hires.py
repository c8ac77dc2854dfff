"""AUTOMATIC1111's "Hires. fix" for SD 1.x, SD 2.x and SDXL: the image is made at the base
size, upscaled, then run through img2img (SDEdit, Meng et al. 2022) at the denoising strength,
so a large picture keeps the composition the model draws well at its native size.

As A1111 does it (``processing.StableDiffusionProcessingTxt2Img``):

- the target is ``int(width * scale)`` x ``int(height * scale)``, or ``Hires resize`` (one
  side 0: the other from the aspect; both: cover, then crop the centre);
- a ``Latent*`` upscaler interpolates the latents (``shared.latent_upscale_modes``: bilinear,
  bicubic, nearest, nearest-exact, with or without antialiasing); ``None``/``Lanczos`` and
  ``Nearest`` resize the decoded image; any other name is a GAN upscaler found by name in the
  upscale models (``R-ESRGAN 4x+`` is Real-ESRGAN x4plus), run on the decoded image;
- the second pass runs ``Hires steps`` (0: the first pass's) at ``Denoising strength``, with
  ``Hires sampler``, ``Hires prompt``, ``Hires negative prompt`` and ``Hires CFG Scale`` when
  given, each image with its own seed.
"""

from __future__ import annotations

import numpy as np

from studio.core.errors import BadInput
from studio.engine.jobs.requests import GenerateRequest, HiresFix

# A1111 modules/shared.py latent_upscale_modes: name -> torch interpolate settings.
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# A1111's built-in pixel upscalers ("None": no model, the plain LANCZOS resize).
PIXEL_MODES = {"None": "lanczos", "Lanczos": "lanczos", "Nearest": "nearest"}
# A1111's names of the GAN upscalers it ships (modules/realesrgan_model.py) -> catalog ids.
GAN_NAMES = {
    "R-ESRGAN 4x+": "realesrgan-x4plus",
    "R-ESRGAN 4x+ Anime6B": "realesrgan-x4plus-anime",
}


def hires_size(width: int, height: int, spec: HiresFix) -> tuple[int, int]:
    """(width, height) of the second pass, before the crop of a ``resize`` of both sides."""
    rx, ry = spec.resize or (0, 0)
    if rx == 0 and ry == 0:
        return int(width * spec.scale), int(height * spec.scale)
    if ry == 0:
        return rx, rx * height // width
    if rx == 0:
        return ry * width // height, ry
    # Both: cover the box (A1111 upscales to cover, then crops to the requested size).
    if width / height < rx / ry:
        return rx, rx * height // width
    return ry * width // height, ry


def target_size(width: int, height: int, spec: HiresFix) -> tuple[int, int]:
    """The output size: the resize box when both sides are given, else :func:`hires_size`;
    in multiples of 8 (the SD VAE factor), as A1111's latent size ``// 8`` makes it."""
    w, h = spec.resize if spec.resize and all(spec.resize) else hires_size(width, height, spec)
    return max(8, w // 8 * 8), max(8, h // 8 * 8)


def validate_hires(request: GenerateRequest) -> None:
    """One line for a hires request Studio can't run as asked (before any model loads)."""
    spec = request.hires
    if spec is None:
        return
    if request.init_image is not None or request.mask is not None:
        raise BadInput("Hires. fix is a second pass of txt2img; img2img and inpainting take none")
    if request.controls:
        raise BadInput(
            "Hires. fix with ControlNet guides is not supported yet: use one or the other"
        )
    if not (spec.resize and any(spec.resize)) and not 1.0 <= spec.scale <= 4.0:
        raise BadInput(f"Hires upscale {spec.scale:g}: use 1 to 4")
    if not 0.0 < spec.denoise <= 1.0:
        raise BadInput(f"Hires denoising strength {spec.denoise:g}: use a value in (0, 1]")
    if spec.steps < 0:
        raise BadInput(f"Hires steps {spec.steps}: use 0 (the same steps) or more")
    w, h = target_size(request.width, request.height, spec)
    if w * h > 4096 * 4096:
        raise BadInput(f"Hires. fix to {w}x{h} is too large (at most 4096x4096)")


def _crop_center(array, size: tuple[int, int]):
    """The centre ``size`` (w, h) of an (..., H, W) tensor or an (H, W, C) array."""
    w, h = size
    if isinstance(array, np.ndarray):
        y, x = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
        return array[y : y + h, x : x + w]
    y, x = (array.shape[-2] - h) // 2, (array.shape[-1] - w) // 2
    return array[..., y : y + h, x : x + w]


def upscale_latents(latents, request: GenerateRequest):
    """The first pass's latents interpolated to the second pass's size (A1111's latent modes)."""
    import torch.nn.functional as F

    spec = request.hires
    mode, antialias = LATENT_MODES[spec.upscaler]
    w, h = hires_size(request.width, request.height, spec)
    out = F.interpolate(latents, size=(h // 8, w // 8), mode=mode, antialias=antialias)
    tw, th = target_size(request.width, request.height, spec)
    return _crop_center(out, (tw // 8, th // 8))


def upscale_pixels(ctx, image: np.ndarray, request: GenerateRequest) -> np.ndarray:
    """The decoded first pass upscaled to the second pass's size with a pixel upscaler."""
    from PIL import Image

    spec = request.hires
    size = hires_size(request.width, request.height, spec)
    mode = PIXEL_MODES.get(spec.upscaler)
    if mode is None:
        image = _gan(ctx, image, request, max(size[0] / image.shape[1], size[1] / image.shape[0]))
        mode = "lanczos"  # the GAN's output to the exact size, as A1111's resize does
    resample = Image.Resampling.LANCZOS if mode == "lanczos" else Image.Resampling.NEAREST
    out = np.asarray(Image.fromarray(image[..., :3]).resize(size, resample))
    return np.ascontiguousarray(_crop_center(out, target_size(request.width, request.height, spec)))


def _gan(ctx, image: np.ndarray, request: GenerateRequest, scale: float) -> np.ndarray:
    from studio.core.errors import ModelError
    from studio.engine.jobs.device import pick_device
    from studio.engine.restore.upscale import load_upscaler, resolve_upscaler, upscale_image

    name = request.hires.upscaler
    try:
        path = resolve_upscaler(GAN_NAMES.get(name, name))
    except (BadInput, ModelError) as e:
        raise type(e)(
            f"Hires upscaler {name!r} is not installed: add it in the Models panel (upscalers), "
            "or use Latent or Lanczos"
        ) from e
    descriptor = ctx.runner.cache(
        f"upscaler:{path}@{path.stat().st_mtime_ns}", lambda: load_upscaler(path)
    )
    choice = pick_device(request.device or ctx.runner.device, request.dtype or ctx.runner.dtype)
    out, _ = upscale_image(image, descriptor, scale, choice, check=ctx.check)
    return out


def hires_metadata(meta: dict, request: GenerateRequest) -> dict:
    """A1111's infotext fields of the pass (``Size`` stays the first pass's, as A1111 writes)."""
    spec = request.hires
    if spec.resize and any(spec.resize):
        meta["hires_resize"] = f"{spec.resize[0]}x{spec.resize[1]}"
    else:
        meta["hires_upscale"] = float(spec.scale)
    meta["hires_steps"] = int(spec.steps)
    meta["hires_upscaler"] = spec.upscaler
    meta["denoising_strength"] = float(spec.denoise)
    if spec.sampler:
        meta["hires_sampler"] = spec.sampler
    if spec.prompt is not None:
        meta["hires_prompt"] = spec.prompt
    if spec.negative_prompt is not None:
        meta["hires_negative_prompt"] = spec.negative_prompt
    if spec.guidance is not None:
        meta["hires_cfg_scale"] = float(spec.guidance)
    return meta


class SecondPass:
    """The img2img pipeline and arguments of a job's hires pass (loaded before the first pass
    so the job's total steps are known from the start)."""

    def __init__(self, ctx, request: GenerateRequest, loras: tuple) -> None:
        from studio.core.prompt_syntax import extract_loras
        from studio.engine.diffusion.sd.pipeline import family_of, load_pipeline
        from studio.engine.diffusion.sd.prompts import prompt_kwargs
        from studio.engine.diffusion.sd.sampling import steps_per_image

        spec = request.hires
        self.request = request
        self.pipe = load_pipeline(
            ctx, request.model, "img2img", scheduler=spec.sampler or request.scheduler,
            loras=loras, device=request.device, dtype=request.dtype, vae=request.vae,
        )  # fmt: skip
        prompt = spec.prompt if spec.prompt is not None else request.prompt
        negative = spec.negative_prompt
        negative = request.negative_prompt if negative is None else negative
        self.steps = spec.steps or request.steps
        self.kwargs = dict(
            **prompt_kwargs(
                self.pipe, family_of(self.pipe), extract_loras(prompt)[0], negative,
                request.clip_skip, notify=lambda msg: ctx.progress(ctx.step, ctx.total, msg),
            ),
            num_inference_steps=self.steps,
            guidance_scale=request.guidance if spec.guidance is None else spec.guidance,
            strength=spec.denoise,
        )  # fmt: skip
        self.per_image = steps_per_image(self.pipe, self.steps, spec.denoise)

    def pipe_pixels(self) -> int:
        w, h = target_size(self.request.width, self.request.height, self.request.hires)
        return w * h

    def run(self, ctx, image: np.ndarray, latents, seed: int, done: int, total: int) -> np.ndarray:
        """The second pass of one image (``latents``: its first-pass latents, 1 x C x h x w)."""
        from studio.engine.diffusion.sd.sampling import denoise
        from studio.engine.diffusion.sd.schedulers import seed_noise
        from studio.engine.diffusion.shared.crop import pil_image
        from studio.engine.jobs.device import generator_for

        request = self.request
        if request.hires.upscaler in LATENT_MODES:
            start = upscale_latents(latents, request).to(self.pipe.unet.dtype)
        else:
            up = upscale_pixels(ctx, image, request)
            start = pil_image(up, (up.shape[1], up.shape[0]))
        seed_noise(self.pipe.scheduler, [seed])
        return denoise(
            ctx, self.pipe, preview=request.preview, preview_of=request.preview_of,
            total_steps=total, step_offset=done, image=start,
            generator=generator_for(seed, self.pipe.device), **self.kwargs,
        )[0]  # fmt: skip
