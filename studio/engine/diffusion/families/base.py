"""The model-family descriptor: everything the engine, the CLI and the UI need to know about one
family of diffusion models (SD 1.x, SD 2.x, SDXL, and later Flux, SD3, ...), in one frozen
object, so no code outside this package branches on a family's name.

How to add a family
-------------------
1. Write ``studio/engine/diffusion/families/<name>.py`` with one module-level ``FAMILY =
   Family(...)``. Fill in:

   - recognition: ``matches(info)`` for a diffusers folder or a loaded pipeline (``info`` is a
     :class:`ModelInfo`: the pipeline class name, its components and their config dicts), and
     ``match_file(probe)`` for a single-file checkpoint (``probe`` is a :class:`TensorProbe`:
     tensor names/shapes, and values on demand), returning the shipped config folder name
     (under ``models/configs``) or None. ``priority``: higher is tried first, so a family whose
     test is more specific (SDXL: a second text encoder) wins over a catch-all (SD1).
   - ``pipelines``: the diffusers pipeline class name per task key (:data:`TASK_KEYS`:
     ``txt2img``, ``img2img``, ``inpaint`` and ``controlnet-<task>``). Tasks a family lacks are
     simply absent (``tasks``/``supports`` then say so and the engine refuses in one line).
   - defaults: ``default_size``, ``default_steps``, ``default_guidance``, ``default_sampler``
     (None = the model's own scheduler config).
   - ``prediction``: "epsilon" | "v_prediction" | "flow" (rectified flow / flow matching,
     Lipman et al. 2023; Esser et al. 2024 for SD3). For SD-style families a model's own
     scheduler config still decides (SD2-768 is v-prediction inside the sd2 family).
   - text: ``text_encoders`` (component names, in order), ``pooled_from`` (the component whose
     pooled output conditions the model, SDXL's ``text_encoder_2``), ``prompt_weighting``
     (whether A1111 ``(word:1.2)`` weighting of CLIP embeddings applies: True for CLIP-only
     families; a T5/LLM family sets False and gets the raw prompt), ``clip_hidden`` (which CLIP
     layer conditions the model: "last" with the final norm, SD1/SD2; "penultimate" without
     it, SDXL; clip skip counts back from there), ``supports_negative_prompt``
     and ``guidance_kind`` ("cfg": classifier-free guidance, Ho & Salimans 2022; "distilled":
     the guidance scale is an input of the model, as in Flux-dev; "none": no guidance, e.g.
     Flux-schnell / turbo).
   - latents: ``latent_channels`` (4 for SD, 16 for Flux/SD3), ``latent_packing`` (None, "2x2"
     for Flux's packed 2x2 patches, or "tokens": one token per latent pixel, Qwen-Image 2.1), ``size_multiple`` (what the model's width and height
     must be multiples of: the VAE's downsampling x the transformer's patch size; 8 for the SD
     UNets, 16 for SD 3.5, Z-Image, Qwen-Image, FLUX.1 and FLUX.2; the Generate panel snaps
     its size to it and a job at another size runs at :meth:`Family.work_size`), the linear
     latent->RGB preview factors ``latent_rgb`` (rows = latent channels, columns = R, G, B)
     and ``latent_rgb_bias``, and the tiny preview decoder (``preview_decoder`` catalog id,
     ``preview_repo`` HF repo, ``preview_env`` environment variable).
   - ControlNet: ``controlnet_bases`` (family names whose ControlNets fit),
     ``controlnet_defaults`` (guide kind -> catalog id), ``controlnet_scale`` (the default
     conditioning scale) and ``controlnet_config`` (shipped config for ControlNet single
     files, None when only diffusers folders load offline).
   - memory: ``vae_upcast`` (the VAE overflows in fp16 and must decode in fp32, SDXL's does),
     ``vae_fp16_fix`` (catalog id of a VAE that does not), ``dtypes`` (preferred order on a GPU).
   - single files: ``single_file_configs`` (config folder -> base HF repo, for the tokenizer),
     ``tokenizer_fallbacks`` ((config, tokenizer folder) -> other repos with the same vocab),
     ``transformer_class`` (the diffusers class of a flow family's denoiser, for
     transformer-only files).
   - flow pipelines (read by ``flow.generate`` / ``flow.previews``): ``base`` (the family a variant
     belongs to: its memory-planner row and latent format, flux1 for flux1-fill),
     ``guidance_param`` (the pipeline argument that takes the guidance scale:
     ``true_cfg_scale`` for Qwen-Image's true CFG), ``cfg_negative`` (the negative prompt used
     when guidance is on and the user gave none; Qwen's card uses " "), ``edit`` (the input
     image conditions the model by instruction, Kontext / Qwen-Image-Edit: no strength),
     ``strength_tasks`` (the tasks whose pipeline noises the input image by a strength:
     img2img and inpaint for most; none for FLUX.1 Fill and Kontext, whose image is a model
     input; only inpaint for Qwen-Image-Edit, whose inpaint pipeline noises the masked latents
     (diffusers' default strength 0.6) while its edit pipeline takes the image as a condition), ``call_kwargs(pipe, width, height)`` (extra pipeline arguments: FLUX.1
     schnell's 256-token T5 limit, Kontext's size), ``file_scheduler(probe)`` (scheduler settings a single
     file declares by marker keys: an SDXL ``v_pred`` / ``ztsnr`` file), ``decode_latents(vae, latents)`` (the
     full-VAE preview decode of spatial latents, when the VAE needs more than undoing
     ``scaling_factor``/``shift_factor``: Qwen's per-channel mean/std, FLUX.2's batch norm).
   - ``memory`` / ``memory_default`` / ``memory_hints`` / ``memory_names`` (the planner's rows),
     ``controlnet_file_keys`` (tensor names of its ControlNet single files) and ``tiny_model``
     (the builder of a tiny random pipeline folder for the tests).
2. The registry finds it (any ``Family`` in any module of this package); add its catalog
   entries and its name to ``bases`` in ``models/catalog.toml``.
3. ``tests/engine/diffusion/test_family_contract.py`` runs it on its tiny model; add
   recognition tests in ``tests/engine/diffusion/test_families.py``.

Nothing else changes: loader, generate, previews, inpaint, schedulers, the CLI defaults and the
panels read these fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Prediction = Literal["epsilon", "v_prediction", "flow"]
GuidanceKind = Literal["cfg", "distilled", "none"]
TASKS: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
TASK_KEYS: tuple[str, ...] = TASKS + tuple(f"controlnet-{t}" for t in TASKS)


@dataclass(frozen=True)
class ModelInfo:
    """What recognition sees of a diffusers folder or a loaded pipeline: the pipeline class
    name (``model_index.json``'s ``_class_name``), the component names and the config dict of
    each component that has one (``unet``, ``transformer``, ``text_encoder_2``, ...)."""

    class_name: str = ""
    components: frozenset[str] = frozenset()
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def config(self, component: str) -> Mapping[str, Any]:
        return self.configs.get(component) or {}


class TensorProbe:
    """The tensors of a single-file checkpoint for recognition: names and shapes up front,
    values read on demand (``tensor(name)``), plus an optional sidecar config text (A1111's
    ``<model>.yaml`` next to the file)."""

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        loader: Callable[[str], Any] | None = None,
        sidecar: str = "",
        name: str = "",
    ) -> None:
        self.shapes = dict(shapes)
        self._loader = loader
        self.sidecar = sidecar
        self.name = name

    def has_prefix(self, *prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in self.shapes)

    def shape(self, *names: str) -> tuple[int, ...] | None:
        """The shape of the first of ``names`` present (with or without the LDM UNet prefix)."""
        for n in names:
            for key in (n, "model.diffusion_model." + n):
                if key in self.shapes:
                    return self.shapes[key]
        return None

    def tensor(self, name: str):
        """The tensor ``name`` (a torch tensor) or None if absent or unreadable."""
        if name not in self.shapes or self._loader is None:
            return None
        try:
            return self._loader(name)
        except Exception:  # noqa: BLE001 - recognition falls back to shapes
            return None

    def unet_in_channels(self) -> int | None:
        s = self.shape("input_blocks.0.0.weight")
        return s[1] if s and len(s) == 4 else None


# The share of a quantized model's bytes that stays in bf16 (norms, embeddings, biases)
# unless a row says otherwise (ModelNeeds.fp8_keep / te_keep).
_UNQUANTIZED_SHARE = 0.03


@dataclass(frozen=True)
class ModelNeeds:
    """What one model needs. Sizes in decimal GB at bf16/fp16 (as the repo lists them).

    ``work_gb``: activations of one denoising step at ``native_px`` (one image, the CFG batch
    included); ``decode_gb``: the untiled VAE decode at ``native_px``; ``blocks``: the
    transformer's (or UNet's) offloadable blocks; ``te_blocks``: the text encoder's layers;
    ``te_layer_gb``: its largest single tensor (the token embedding), which no format
    quantizes.

    ``fp8_keep``: the share of the transformer's bf16 bytes that diffusers' fp8 layerwise
    casting leaves in bf16: its skip patterns ("norm", "pos_embed") keep the AdaLN modulation
    Linears (``norm1.linear``, ``norm1_context.linear``, ``norm.linear``), 27 % of FLUX.1
    and 33 % of SD 3.5 Large. ``te_keep``: the share of the text encoders' bf16 bytes that
    NF4 (transformers' bitsandbytes integration) leaves in bf16: the token embedding, a
    causal LM's output head, and T5's ``wo`` layers (its ``_keep_in_fp32_modules``, 1.0B
    of T5-XXL's 4.76B). Measured on the real architectures built on the meta device
    (tests/engine/diffusion/test_memory_oracle.py).

    ``vae_tile_px``: the side of one VAE decode tile, the VAE's ``sample_size`` (diffusers
    tiles only above it: 512 for SD 1.x, 768 for SD 2.x, 1024 for the SDXL / FLUX / SD 3.5 /
    Z-Image VAEs, 256 for Qwen-Image's Wan VAE); a tiled decode costs one tile's working
    memory, and no less than an untiled decode of an image that fits one tile."""

    key: str
    label: str
    family: str
    transformer_gb: float
    text_encoder_gb: float
    vae_gb: float
    blocks: int
    te_blocks: int
    work_gb: float
    decode_gb: float
    native_px: int = 1024
    te_layer_gb: float = 0.3
    quantizable: bool = True
    gguf_repo: str | None = None
    note: str = ""
    fp8_keep: float = _UNQUANTIZED_SHARE
    te_keep: float = _UNQUANTIZED_SHARE
    vae_tile_px: int = 1024

    @property
    def total_gb(self) -> float:
        return self.transformer_gb + self.text_encoder_gb + self.vae_gb


def _frozen(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Family:
    """One model family. See the module docstring for what each field means and how to add a
    family. Instances are immutable and hashable by name."""

    name: str
    label: str
    pipelines: Mapping[str, str]
    matches: Callable[[ModelInfo], bool]
    match_file: Callable[[TensorProbe], str | None] = lambda probe: None
    priority: int = 0
    # defaults
    default_size: tuple[int, int] = (512, 512)
    default_steps: int = 20
    default_guidance: float = 7.0
    default_sampler: str | None = None
    # prediction and guidance
    prediction: Prediction = "epsilon"
    guidance_kind: GuidanceKind = "cfg"
    supports_negative_prompt: bool = True
    # text conditioning
    text_encoders: tuple[str, ...] = ("text_encoder",)
    # the UNet's cross-attention width (its text encoders' hidden width: 768 SD 1.x, 1024 SD
    # 2.x, 2048 SDXL), which tells a LoRA, ControlNet or embedding file's base family
    context_dim: int | None = None
    pooled_from: str | None = None
    prompt_weighting: bool = True
    clip_hidden: Literal["last", "penultimate"] = "last"
    # latents and previews
    latent_channels: int = 4
    latent_packing: str | None = None
    size_multiple: int = 8  # VAE factor x patch size: the model's sides are multiples of it
    latent_rgb: tuple[tuple[float, ...], ...] = ()
    latent_rgb_bias: tuple[float, ...] = (0.0, 0.0, 0.0)
    preview_decoder: str | None = None
    preview_repo: str | None = None
    preview_env: str | None = None
    # ControlNet
    controlnet_bases: tuple[str, ...] = ()
    controlnet_defaults: Mapping[str, str] = field(default_factory=dict)
    controlnet_scale: float = 1.0
    controlnet_config: str | None = None  # shipped config folder for ControlNet single files
    # memory / dtype policy
    vae_upcast: bool = False
    vae_fp16_fix: str | None = None
    dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32")
    # memory planner: this family's rows (memory.MODEL_NEEDS), the row used without a better
    # hint (None: the first), (substring of a normalised name, row key) hints tried in order,
    # and (regular expression, row key) patterns for files told only by name (GGUF)
    memory: tuple[ModelNeeds, ...] = ()
    memory_default: str | None = None
    memory_hints: tuple[tuple[str, str], ...] = ()
    memory_names: tuple[tuple[str, str], ...] = ()
    # ControlNet single files made for this family: each entry is a set of tensor names that
    # together mark one (a name ending in "." stands for any tensor under that prefix)
    controlnet_file_keys: tuple[tuple[str, ...], ...] = ()
    # tiny random model of the real architecture (tests, self-test): builder(folder) -> folder
    tiny_model: Callable[[Any], Any] | None = None
    # a tiny random ControlNet for it (tests): builder(folder) -> folder
    tiny_controlnet: Callable[[Any], Any] | None = None
    # single-file checkpoints
    single_file_configs: Mapping[str, str] = field(default_factory=dict)
    tokenizer_fallbacks: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    transformer_class: str | None = None
    # flow pipelines
    base: str | None = None
    guidance_param: str = "guidance_scale"
    cfg_negative: str | None = None
    edit: bool = False
    strength_tasks: tuple[str, ...] = ("img2img", "inpaint")
    call_kwargs: Callable[[Any, int, int], Mapping[str, Any]] = lambda pipe, width, height: {}
    file_scheduler: Callable[[TensorProbe], Mapping[str, Any]] = lambda probe: {}
    decode_latents: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        for name in ("pipelines", "controlnet_defaults", "single_file_configs"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "tokenizer_fallbacks", _frozen(self.tokenizer_fallbacks))
        unknown = set(self.pipelines) - set(TASK_KEYS)
        if unknown:
            raise ValueError(f"family {self.name}: unknown task keys {sorted(unknown)}")
        if self.size_multiple < 1 or self.size_multiple % 8:
            raise ValueError(f"family {self.name}: size_multiple must be a multiple of 8")
        if self.latent_rgb and len(self.latent_rgb) != self.latent_channels:
            raise ValueError(f"family {self.name}: latent_rgb needs one row per latent channel")

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Family) and other.name == self.name

    def __str__(self) -> str:
        return self.name

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """The size (w, h) the model works at for an output of ``width`` x ``height``: each
        side rounded up to a multiple of ``size_multiple`` (itself when it already is one).
        The result is resized back to the asked size, so it covers the region exactly."""
        m = max(1, int(self.size_multiple))
        return (max(m, -(-int(width) // m) * m), max(m, -(-int(height) // m) * m))

    @property
    def root(self) -> str:
        """The family a variant belongs to (``base``), else its own name."""
        return self.base or self.name

    # -- capabilities ---------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """The plain tasks this family runs (a subset of TASKS, in that order)."""
        return tuple(t for t in TASKS if t in self.pipelines)

    def supports(self, task: str, controlnet: bool = False) -> bool:
        return _key(task, controlnet) in self.pipelines

    def takes_strength(self, task: str) -> bool:
        """Whether the ``task`` pipeline takes the request's strength."""
        return task in self.strength_tasks

    def pipeline_class(self, task: str, controlnet: bool = False) -> str:
        """The diffusers pipeline class name for ``task`` (with ControlNet or not); BadInput in
        one line when the family has no such pipeline."""
        from studio.core.errors import BadInput

        if task not in TASKS:
            raise BadInput(f"Unknown task {task!r} (use {', '.join(TASKS)})")
        cls = self.pipelines.get(_key(task, controlnet))
        if cls is None:
            what = f"{task} with ControlNet" if controlnet else task
            raise BadInput(f"{self.label} models can't do {what} in Studio")
        return cls

    def accepts_controlnet(self, base: str | None) -> bool:
        """Whether a ControlNet made for family ``base`` fits this family (unknown base: yes,
        the pipeline then decides)."""
        return base is None or base in self.controlnet_bases

    @property
    def configs(self) -> tuple[str, ...]:
        """The shipped single-file config folders of this family."""
        return tuple(self.single_file_configs)


def _key(task: str, controlnet: bool) -> str:
    return f"controlnet-{task}" if controlnet else task


def cross_attention_dim(cfg: Mapping[str, Any]) -> int | None:
    """A UNet/ControlNet config's cross-attention width (the first, when a list)."""
    cross = cfg.get("cross_attention_dim")
    if isinstance(cross, list | tuple):
        cross = cross[0] if cross else None
    return int(cross) if cross is not None else None
