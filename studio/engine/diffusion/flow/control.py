"""ControlNet for the flow-matching families (FLUX.1, SD 3.5, Z-Image, Qwen-Image): recognising
which family a ControlNet was made for, loading it offline (cached in the runner), building the
family's ControlNet pipeline from the loaded base (``from_pipe(base, controlnet=...)``, so the
transformer, VAE and text encoders are shared) and the control arguments in the pipeline's own
names.

A ControlNet (Zhang et al. 2023) for a DiT is a copy of the first transformer blocks whose
outputs, scaled by ``controlnet_conditioning_scale``, are added to the base transformer's
hidden states (FLUX.1 / SD3: InstantX, XLabs; Z-Image: the Union control layers, which reuse
the base's embedders and refiners). The diffusers class of a family's ControlNet is named
after its transformer class (``FluxTransformer2DModel`` -> ``FluxControlNetModel``, and
``FluxMultiControlNetModel`` for several at once), so no family name is branched on here.

The contract is the SD path's (``sd.pipeline.load_pipeline`` / ``sd.sampling.control_kwargs``): each
ControlInput's model is family-checked before its weights load (one line when an SD1.5
ControlNet meets FLUX.1), the control images are resized to the generation size, and weight /
start / end become the conditioning scale and guidance window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families.base import Family

# Multi-ControlNet classes that run every condition through a single net (several guides, one
# Union ControlNet) and refuse more than one net.
ONE_NET_MULTI = frozenset({"QwenImageMultiControlNetModel"})
# Runner.cache prefix of flow ControlNet modules and how many stay loaded at once.
CACHE_PREFIX = "flowcn"
CACHE_KEEP = 4


def controlnet_class(family: Family, multi: bool = False) -> str | None:
    """The diffusers ControlNet class name for a flow family, derived from its transformer
    class (None when the family has none)."""
    if not family.transformer_class or not family.transformer_class.endswith("Transformer2DModel"):
        return None
    stem = family.transformer_class.removesuffix("Transformer2DModel")
    return f"{stem}{'Multi' if multi else ''}ControlNetModel"


def _diffusers_class(name: str | None):
    import diffusers

    return getattr(diffusers, name, None) if name else None


def _flow_family_of_class(class_name: str) -> Family | None:
    """The base flow family (not a variant) whose ControlNet class is ``class_name``."""
    from studio.engine.diffusion.flow.load import flow_families

    for fam in flow_families():
        if fam.base is None and controlnet_class(fam) == class_name:
            return fam
    return None


def _has(keys: set[str], name: str) -> bool:
    return any(k.startswith(name) for k in keys) if name.endswith(".") else name in keys


def _file_class(shapes) -> str | None:
    """The ControlNet class of a single file, from the tensor names its family declares
    (``Family.controlnet_file_keys``); the entry naming the most tensors is tried first, so
    a Qwen-Image file (FLUX.1's embedder name and its own ``img_in``) is Qwen-Image's."""
    from studio.engine.diffusion.flow.load import flow_families

    keys = set(shapes)
    marks = sorted(
        ((names, fam) for fam in flow_families() for names in fam.controlnet_file_keys),
        key=lambda m: -len(m[0]),
    )
    for names, fam in marks:
        if all(_has(keys, n) for n in names):
            return controlnet_class(fam)
    return None


def controlnet_info(ref: str) -> tuple[Family | None, str | None, Path]:
    """(family the ControlNet was made for, its diffusers class name, its path), read before
    any weights load: a folder's config.json (``_class_name``; SD-style ``ControlNetModel``
    configs go through the registry's cross-attention test) or a single file's tensor names.
    The family is None when it can't be told."""
    from studio.engine.diffusion.families import controlnet_family, probe_file
    from studio.engine.diffusion.shared.loader import resolve_model

    resolved = resolve_model(ref)
    path = resolved.path
    if resolved.kind == "file":
        probe = probe_file(path)
        cls = _file_class(probe.shapes)
        if cls is not None:
            return _flow_family_of_class(cls), cls, path
        try:
            return controlnet_family(probe=probe), "ControlNetModel", path
        except (ModelError, BadInput, ValueError):
            return None, None, path
    for cfg_path in (path / "config.json", path / "controlnet" / "config.json"):
        if cfg_path.exists():
            try:
                cfg = json.loads(cfg_path.read_text())
            except ValueError:
                return None, None, cfg_path.parent
            cls = str(cfg.get("_class_name", ""))
            if cls == "ControlNetModel":
                try:
                    return controlnet_family(cfg), cls, cfg_path.parent
                except (ModelError, BadInput, ValueError):
                    return None, cls, cfg_path.parent
            return _flow_family_of_class(cls), cls or None, cfg_path.parent
    return None, None, path


def check_fit(ref: str, family: Family, model_name: str) -> tuple[str, Path]:
    """The ControlNet class and path of ``ref`` when it fits ``family``; BadInput in one line
    when it was made for another family (an SD1.5 ControlNet on FLUX.1) or is not a ControlNet
    this family's pipelines take."""
    cn_family, cls, path = controlnet_info(ref)
    want = controlnet_class(family)
    name = Path(ref).name
    fits = cn_family is None or cn_family.root == family.root  # its own class: it fits
    if not fits and not family.accepts_controlnet(cn_family.root):
        raise BadInput(
            f"ControlNet {name} is for {cn_family.label} but {model_name} is {family.label}: "
            f"use a {family.label} ControlNet"
        )
    if cls is None:
        raise BadInput(f"ControlNet {name}: not a ControlNet Studio can read")
    if cls != want:
        raise BadInput(
            f"ControlNet {name} is a {cls}; {family.label} models take a {want or 'ControlNet'}"
        )
    return cls, path


def single_file_loadable(cls_name: str) -> bool:
    """Whether diffusers' single-file loader can convert this class (its
    ``SINGLE_FILE_LOADABLE_CLASSES``; every model class has ``from_single_file`` through the
    mixin, but only these convert: Z-Image's ControlNet does, FLUX.1's / SD3's / Qwen's do not
    in diffusers 0.42)."""
    try:
        from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    except ImportError:  # pragma: no cover - another diffusers layout
        return False
    return cls_name in SINGLE_FILE_LOADABLE_CLASSES


def load_controlnet_module(cls_name: str, path: Path, family: Family, dtype):
    """The ControlNet weights, offline: a diffusers folder, or a single file where diffusers
    can read that class from one (``from_single_file``) and Studio ships the config
    (``family.controlnet_config``); otherwise one line saying to use the folder."""
    from studio.engine.diffusion.shared.loader import CONFIGS, quiet_loading

    cls = _diffusers_class(cls_name)
    if cls is None:
        raise ModelError(f"ControlNet {path.name}: {cls_name} is not in this diffusers version")
    quiet_loading()
    try:
        if path.is_file():
            config = CONFIGS / family.controlnet_config if family.controlnet_config else None
            if not single_file_loadable(cls_name) or config is None or not config.exists():
                raise ModelError(
                    f"{path.name}: a {family.label} ControlNet single file can't be loaded "
                    "offline; use its diffusers folder (config.json + weights)"
                )
            return cls.from_single_file(
                str(path), config=str(config), torch_dtype=dtype, local_files_only=True
            )
        return cls.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    except (ModelError, BadInput):
        raise
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"ControlNet {path.name}: cannot load ({first})") from e


def _cache_key(path: Path, entry) -> str:
    return f"{CACHE_PREFIX}:{path.resolve()}|{entry.device}|{entry.dtype}"


def load_controlnets(ctx, entry, controls) -> tuple[list, tuple[str, ...]]:
    """The ControlNet module of each control (cached in ``ctx.runner.cache``: a second job
    with the same ControlNet does not reload it) and their cache keys."""
    fam = entry.family
    modules, keys = [], []
    for c in controls:
        cls_name, path = check_fit(c.model, fam, entry.name)
        key = _cache_key(path, entry)

        def factory(cls_name=cls_name, path=path):
            module = load_controlnet_module(cls_name, path, fam, entry.dtype)
            return module.to(entry.device).eval()

        modules.append(ctx.runner.cache(key, factory, keep=CACHE_KEEP))
        keys.append(key)
    return modules, tuple(keys)


def validate_controls(controls) -> None:
    """Reject bad control inputs before any model loads (BadInput, one line)."""
    for c in controls:
        if c.image is None or not isinstance(c.image, np.ndarray) or c.image.ndim not in (2, 3):
            raise BadInput(f"ControlNet {c.kind}: no control image")
        if not c.model:
            raise BadInput(f"ControlNet {c.kind}: no ControlNet model given (--controlnet)")
        if not 0.0 <= c.start < c.end <= 1.0:
            raise BadInput(f"ControlNet {c.kind}: start/end must satisfy 0 <= start < end <= 1")


def control_pipe(ctx, entry, task: str, controls):
    """The family's ControlNet pipeline for ``task`` with the ControlNets of ``controls``
    (one: the model itself; several: the family's Multi-ControlNet class, refused in one line
    where diffusers has none; Qwen-Image's runs several guides through one Union net), built from the loaded base with ``from_pipe`` and kept in
    ``entry.pipes`` under (task, ControlNet keys); pipelines for other ControlNets are dropped
    so their modules can be freed."""
    import diffusers

    fam = entry.family
    cls = getattr(diffusers, fam.pipeline_class(task, controlnet=True))
    if task == "inpaint" and "mask_image" not in call_params(cls):
        # SD3 / Qwen-Image: an inpainting ControlNet drives the fill (control_image +
        # control_mask), not a guide on top of mask-guided denoising
        raise BadInput(
            f"{fam.label} inpainting with a ControlNet needs an inpainting ControlNet "
            "(not wired in Studio yet); inpaint without the ControlNet"
        )
    if len(controls) > 1 and _diffusers_class(controlnet_class(fam, multi=True)) is None:
        raise BadInput(f"{fam.label} takes one ControlNet at a time in this diffusers version")
    validate_controls(controls)
    modules, keys = load_controlnets(ctx, entry, controls)
    pipe_key = (task, keys)
    pipe = entry.pipes.get(pipe_key)
    if pipe is not None:
        return pipe
    for k in [k for k in entry.pipes if isinstance(k, tuple) and k[1]]:
        del entry.pipes[k]
    if len(modules) == 1:
        controlnet = modules[0]
    else:
        multi = _diffusers_class(controlnet_class(fam, multi=True))
        if multi.__name__ in ONE_NET_MULTI:
            if len(set(keys)) > 1:
                raise BadInput(
                    f"{fam.label} takes several guides through one ControlNet (a Union one) "
                    "in this diffusers version, not different ControlNets"
                )
            modules = modules[:1]  # one net, one condition per control
        controlnet = multi(modules)
    try:
        pipe = cls.from_pipe(entry.base, controlnet=controlnet)
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"{entry.name}: cannot build {cls.__name__} ({first})") from e
    pipe.set_progress_bar_config(disable=True)
    entry.pipes[pipe_key] = pipe
    return pipe


# ControlNet-Union modes of FLUX.1 (InstantX / Shakker-Labs FLUX.1-dev-ControlNet-Union(-Pro)
# model cards): the guide kind -> ``control_mode``. A scribble (white strokes on black) is fed
# as an edge map (the canny mode); "lq" is the low-quality/upscale mode.
UNION_MODES = {
    "canny": 0,
    "scribble": 0,
    "lineart": 0,
    "tile": 1,
    "depth": 2,
    "blur": 3,
    "pose": 4,
    "openpose": 4,
    "gray": 5,
    "lq": 6,
}


def _union_modes(pipe, controls) -> list | None:
    """The ``control_mode`` of each control when the pipeline's ControlNet is a Union one
    (``num_mode`` in its config), else None; BadInput for a kind the Union model has no mode
    for."""
    cn = getattr(pipe, "controlnet", None)
    nets = list(getattr(cn, "nets", None) or [cn])
    if len(nets) != len(controls):
        nets = nets[:1] * len(controls)
    if not any(getattr(getattr(n, "config", None), "num_mode", None) for n in nets):
        return None
    modes = []
    for net, c in zip(nets, controls, strict=True):
        if not getattr(net.config, "num_mode", None):
            modes.append(None)  # a plain ControlNet next to a Union one
            continue
        mode = UNION_MODES.get(c.kind)
        if mode is None or mode >= int(net.config.num_mode):
            known = ", ".join(k for k, v in UNION_MODES.items() if v < int(net.config.num_mode))
            raise BadInput(f"ControlNet-Union has no mode for {c.kind!r} (use one of: {known})")
        modes.append(mode)
    return modes


def _pil_rgb(image: np.ndarray, size: tuple[int, int]):
    from PIL import Image

    arr = np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image)
    im = Image.fromarray(arr).convert("RGB")
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def call_params(pipe) -> set[str]:
    """The ``__call__`` argument names of a pipeline (instance or class)."""
    import inspect

    cls = pipe if isinstance(pipe, type) else type(pipe)
    return set(inspect.signature(cls.__call__).parameters)


def control_kwargs(pipe, controls, width: int, height: int) -> dict:
    """The control arguments in ``pipe``'s own names: ``control_image`` (resized to
    ``width`` x ``height``), ``controlnet_conditioning_scale`` and, where the pipeline takes
    them, ``control_guidance_start`` / ``control_guidance_end`` (Z-Image's ControlNet
    pipelines have no guidance window: a start/end other than 0/1 is refused there) and, for a
    FLUX.1 ControlNet-Union, ``control_mode`` from the guide kind (:data:`UNION_MODES`). One
    control: plain values; several: lists, one per ControlNet."""
    if not controls:
        return {}
    params = call_params(pipe)
    one = len(controls) == 1

    def pick(values):
        return values[0] if one else list(values)

    kw = {
        "control_image": pick([_pil_rgb(c.image, (width, height)) for c in controls]),
        "controlnet_conditioning_scale": pick([float(c.weight) for c in controls]),
    }
    if "control_mode" in params:
        modes = _union_modes(pipe, controls)
        if modes is not None:
            kw["control_mode"] = pick(modes)
    if "control_guidance_start" in params:
        kw["control_guidance_start"] = pick([float(c.start) for c in controls])
        kw["control_guidance_end"] = pick([float(c.end) for c in controls])
    elif any(c.start != 0.0 or c.end != 1.0 for c in controls):
        raise BadInput(f"{type(pipe).__name__} has no ControlNet start/end; use start 0 and end 1")
    return kw
