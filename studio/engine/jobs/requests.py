"""Frozen request dataclasses: one per job kind, holding everything the job needs.

Images are numpy arrays (H, W, 3|4 uint8, RGB[A]); masks are (H, W) uint8 where 255 means
"regenerate this pixel". This module imports only numpy so the UI can build requests without
torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

PreviewMode = Literal["latent", "taesd", "full", "off"]
PreviewOf = Literal["x0", "xt"]

PREVIEW_MODES: tuple[str, ...] = ("latent", "taesd", "full", "off")
PREVIEW_OF: tuple[str, ...] = ("x0", "xt")

MIN_SIZE = 64
MAX_SIZE = 4096


def _array(compare: bool = False):
    # numpy arrays don't support ==, so they never take part in dataclass equality.
    return field(default=None, compare=compare, repr=False)


@dataclass(frozen=True)
class ControlInput:
    """One ControlNet guide: the preprocessed control image and how strongly it steers."""

    kind: str  # "canny" | "pose" | "scribble" | "inpaint" | ...
    image: np.ndarray = field(compare=False, repr=False)
    model: str = ""  # ControlNet model: catalog id, repo id, folder or file
    weight: float = 1.0
    start: float = 0.0  # fraction of the steps where guidance starts
    end: float = 1.0  # ... and ends


@dataclass(frozen=True)
class LoraSpec:
    path: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        from pathlib import Path

        return Path(self.path).stem


@dataclass(frozen=True)
class HiresFix:
    """AUTOMATIC1111's Hires. fix (``engine.diffusion.hires``): upscale by ``scale`` (or to
    ``resize`` (w, h), a 0 side following the aspect) with ``upscaler`` (a ``Latent*`` mode,
    Lanczos, Nearest or a GAN upscaler's name), then img2img at ``denoise`` for ``steps``
    (0: the first pass's) with ``sampler``/``prompt``/``negative_prompt``/``guidance``
    (None: the first pass's)."""

    scale: float = 2.0
    steps: int = 0
    denoise: float = 0.7
    upscaler: str = "Latent"
    resize: tuple[int, int] | None = None
    sampler: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    guidance: float | None = None


@dataclass(frozen=True)
class GenerateRequest:
    """txt2img, img2img (init_image + strength) and SD inpainting (init_image + mask)."""

    model: str
    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    seed: int = 0
    width: int = 512
    height: int = 512
    scheduler: str | None = None  # user-facing name (see engine.schedulers); None = model default
    count: int = 1
    init_image: np.ndarray | None = _array()
    strength: float = 0.75
    mask: np.ndarray | None = _array()
    mask_padding: int = 32
    controls: tuple[ControlInput, ...] = ()
    loras: tuple[LoraSpec, ...] = ()
    preview: PreviewMode = "latent"
    preview_of: PreviewOf = "x0"
    device: str | None = None  # "cuda", "mps", "cpu"; None = best available
    dtype: str | None = None  # "float16", "bfloat16", "float32"; None = best for device
    clip_skip: int = 1  # A1111 "Clip skip": 1 = the text encoder's last layer, 2 = one before
    vae: str | None = None  # external VAE (catalog id, folder or file); None = the model's own
    # Memory plan overrides for the flow families (None = the planner decides; see
    # engine.diffusion.memory): quant in WEIGHT_FORMATS (bf16, fp8, q8_0, nf4, q4_k), offload
    # in OFFLOADS (none, model, group, sequential).
    quant: str | None = None
    offload: str | None = None
    hires: HiresFix | None = None  # a second, upscaled pass (SD 1.x/2.x/SDXL txt2img)


@dataclass(frozen=True)
class InpaintRequest:
    """Object removal / replacement inside ``mask`` with a classical, GAN or diffusion backend.

    ``method`` is "telea", "ns", "lama" (with ``model`` a LaMa file or catalog id) or
    "diffusion" (with ``model`` an SD model and a prompt).
    """

    image: np.ndarray = field(compare=False, repr=False)
    mask: np.ndarray = field(compare=False, repr=False)
    method: str = "telea"
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    strength: float = 1.0
    seed: int = 0
    padding: int = 32
    feather: int = 8
    scheduler: str | None = None
    preview: PreviewMode = "latent"
    preview_of: PreviewOf = "x0"
    device: str | None = None
    dtype: str | None = None
    clip_skip: int = 1
    vae: str | None = None


@dataclass(frozen=True)
class UpscaleRequest:
    image: np.ndarray = field(compare=False, repr=False)
    model: str = ""  # upscaler file or catalog id; "" with method="lanczos"
    method: str = "model"  # "model" | "lanczos"
    scale: float = 4.0
    tile: int = 0  # 0 = automatic from free memory
    overlap: int = 16
    sharpen: float = 0.0  # lanczos only
    device: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class PreprocessRequest:
    """ControlNet preprocessing: "canny" (params low/high) or "pose" (params model)."""

    kind: str
    image: np.ndarray = field(compare=False, repr=False)
    params: tuple[tuple[str, object], ...] = ()
    device: str | None = None

    def param(self, name: str, default: object = None) -> object:
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class SegmentRequest:
    """Select by prompts with SAM 2 (``studio.engine.vision.segment``): ``points`` are
    (x, y, label) in image pixels (label 1 includes, 0 excludes), ``box`` is (x0, y0, x1, y1),
    ``text`` a phrase ("the dog": Grounding DINO boxes, each decoded by SAM 2). With no
    prompt at all the job only computes the image's embedding, which later prompts on the
    same image reuse. Finished.images: the masks (uint8 0/255, the image's size; one per
    instance for ``text``)."""

    image: np.ndarray = field(compare=False, repr=False)
    points: tuple[tuple[float, float, int], ...] = ()
    box: tuple[float, float, float, float] | None = None
    text: str | None = None
    model: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class RestoreFacesRequest:
    """Restore every face found in ``image`` (RGB/RGBA uint8) with a blind face restoration
    model (GFPGAN, RestoreFormer) and paste it back.

    ``model``: a model file, a catalog id (``gfpgan-1.4``), a RestoreFormer file, or None for
    ``gfpgan-1.4``. ``strength``: 0 keeps the original pixels exactly, 1 the restored face.
    ``detector``: ``yunet`` (None), a YuNet ``.onnx`` file, or a name given to
    :func:`studio.engine.restore.faces.register_detector`."""

    image: np.ndarray = field(compare=False, repr=False)
    model: str | None = None
    strength: float = 1.0
    device: str | None = None
    detector: str | None = None


@dataclass(frozen=True)
class DetailFacesRequest:
    """Redraw every face found in ``image`` (RGB/RGBA uint8) with diffusion inpainting, as
    ADetailer does: each face's box (grown by ``dilate`` px) is inpainted on a crop padded by
    ``padding`` px and scaled to the model's native size, at its own prompt and denoising
    strength, then pasted back feathered by ``mask_blur`` px.

    ``model``: an SD inpainting or txt2img model. ``prompt`` / ``negative_prompt``: one for
    every face, or several joined by ``[SEP]`` (ADetailer's separator): the i-th face gets the
    i-th, the last one the faces after it. ``confidence``: faces the detector scores lower are
    left alone. ``seed`` + i is face i's seed."""

    image: np.ndarray = field(compare=False, repr=False)
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    denoising_strength: float = 0.4
    confidence: float = 0.3
    dilate: int = 4
    mask_blur: int = 4
    padding: int = 32
    steps: int = 20
    guidance: float = 7.0
    seed: int = 0
    detector: str | None = None
    device: str | None = None
    dtype: str | None = None


# -- model manager (studio.engine.models.jobs) -------------------------------------------------
@dataclass(frozen=True)
class DownloadRequest:
    """Download catalog model ``model_id`` (resumes a cut-off download; already installed:
    finishes at once). Progress: ``step``/``total`` are bytes, ``message`` the status line
    (size, speed, ETA). Finished.extra: ``{"model_id", "path"}``."""

    model_id: str


@dataclass(frozen=True)
class ImportModelRequest:
    """Identify the model file ``path`` and copy (``link=True``: hard/sym-link) it into
    Studio's models folder, as ``name`` if given. Progress: bytes copied. Finished.extra:
    ``{"imported": ImportedModel}``."""

    path: str
    link: bool = False
    name: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class ScanModelsRequest:
    """What is on disk: catalog models installed, imported files, files dropped into the
    model folders (``kinds``: only these; () for all). Progress: catalog entries checked.
    Finished.extra: ``{"installed": {id: path}, "imported": [ImportedModel],
    "found": [ModelFile]}``."""

    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveModelRequest:
    """Delete a downloaded catalog model (by id) or an imported file (by name or path).
    Finished.extra: ``{"freed": bytes}``."""

    name: str


# -- training (studio.engine.training) ---------------------------------------------------------
@dataclass(frozen=True)
class TrainLoraRequest:
    """DreamBooth LoRA training (Ruiz et al. 2023; Hu et al. 2021) of an SD 1.x/2.x or SDXL
    model's UNet on ``images`` of one subject bound to ``trigger``. ``captions``: image path ->
    caption (a mapping; stored as sorted pairs so the request stays hashable; an image without
    one uses its ``.txt`` sidecar, else ``"a photo of <trigger> <class>"``). ``resolution``:
    the bucket area's side (None = the model's native size). ``prior_preservation`` adds the
    class-image loss (``num_class_images`` generated with ``class_prompt``, weight
    ``prior_weight``). ``sample_every``/``checkpoint_every``: Preview events / checkpoints
    every N steps (0 = never; a cancel always checkpoints). ``resume``: continue from the
    newest checkpoint. ``out``: the .safetensors LoRA (None = Studio's models folder
    ``lora/<trigger>.safetensors``). ``preset``: "12gb" (see ``training.presets``).
    Progress: step/total = training steps, message = loss and ETA. Finished.extra:
    ``{"path", "steps", "loss", "losses", "checkpoints", "notes"}``; images: the last sample."""

    model: str
    images: tuple[str, ...]
    trigger: str
    class_prompt: str | None = None
    captions: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None
    steps: int = 800
    rank: int = 16
    lr: float = 1e-4
    resolution: int | None = None
    seed: int = 0
    prior_preservation: bool = False
    num_class_images: int = 100
    prior_weight: float = 1.0
    sample_every: int = 0
    sample_prompt: str | None = None
    sample_steps: int = 20  # sampling steps of the previews and of the class images
    checkpoint_every: int = 250
    resume: bool = False
    out: str | None = None
    log_csv: str | None = None
    batch_size: int = 1
    cache_latents: bool = True
    cache_text: bool = True
    gradient_checkpointing: bool = False
    mixed_precision: str | None = None  # "no" | "fp16" | "bf16"; None = best for the device
    optimizer: str = "adamw"  # "adamw" | "adamw8bit" (bitsandbytes; AdamW with a note if absent)
    lr_warmup: int = 0
    max_grad_norm: float = 1.0
    save_format: str = "diffusers"  # "diffusers" | "kohya" (A1111/ComfyUI key names)
    preset: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(str(p) for p in self.images))
        caps = self.captions
        if caps is not None:
            pairs = caps.items() if isinstance(caps, Mapping) else caps
            object.__setattr__(self, "captions", tuple(sorted((str(k), str(v)) for k, v in pairs)))

    def caption(self, path: str) -> str | None:
        """The caption given for image ``path`` (None when there is none)."""
        return dict(self.captions or ()).get(str(path))


Request = (
    GenerateRequest
    | InpaintRequest
    | UpscaleRequest
    | PreprocessRequest
    | DownloadRequest
    | ImportModelRequest
    | ScanModelsRequest
    | RemoveModelRequest
    | TrainLoraRequest
)
