"""The capability table (family x feature) for the README and ``studio info``, generated from
the family descriptors (families/*.py): nothing here is written by hand per family.

A feature is "yes" when the descriptor names a diffusers pipeline for it (and, for LoRA, the
pipeline class has ``load_lora_weights``); previews list what the descriptor gives (linear
latent factors, a tiny decoder); single files list the descriptor's config names, starred
(``name*``) while ``models/configs/<name>`` is not shipped; GGUF is offered
for the transformer families whose transformer class diffusers can load from a GGUF file.
"""

from __future__ import annotations

from collections.abc import Iterable

from studio.engine.diffusion.families.base import Family

# Transformer classes with GGUF single-file support in diffusers (FromOriginalModelMixin).
COLUMNS = (
    "txt2img",
    "img2img",
    "inpaint",
    "ControlNet",
    "LoRA",
    "previews",
    "single files",
    "GGUF",
)


def all_families() -> tuple[Family, ...]:
    """Every registered family, in the registry's order (most specific first)."""
    from studio.engine.diffusion.families.registry import families

    return families()


def _has_lora(fam: Family) -> bool:
    import diffusers

    for cls in fam.pipelines.values():
        if hasattr(getattr(diffusers, cls, None), "load_lora_weights"):
            return True
    return False


def _config_label(name: str) -> str:
    """The config name, starred when its folder is not shipped in models/configs yet (a
    pipeline's model_index.json, or a flow transformer's config: what a transformer-only file
    needs besides its base model's download)."""
    from studio.core.paths import configs_dir

    folder = configs_dir() / name
    shipped = (folder / "model_index.json").exists() or (
        folder / "transformer" / "config.json"
    ).exists()
    return name if shipped else name + "*"


def capability_row(fam: Family) -> dict[str, str]:
    """What Studio runs for ``fam``, one string per column of the table."""
    return _descriptor_row(fam)


def _controlnet_runs(fam: Family, task: str) -> bool:
    """Whether Studio runs ``task`` with a ControlNet on ``fam``: diffusers has the pipeline,
    and for inpainting it takes the mask (SD3 / Qwen-Image's inpaint pipelines with a
    ControlNet need an inpainting ControlNet instead, which the job path refuses)."""
    if not fam.supports(task, controlnet=True):
        return False
    if task != "inpaint" or fam.prediction != "flow":
        return True
    import inspect

    import diffusers

    cls = getattr(diffusers, fam.pipeline_class(task, controlnet=True), None)
    return cls is not None and "mask_image" in inspect.signature(cls.__call__).parameters


def _descriptor_row(fam: Family) -> dict[str, str]:
    yes = "yes"
    cn = [t for t in ("txt2img", "img2img", "inpaint") if _controlnet_runs(fam, t)]
    previews = []
    if fam.latent_rgb:
        previews.append("latent")
    if fam.preview_decoder:
        previews.append(fam.preview_decoder)
    gguf = fam.transformer_class  # GGUF files load per transformer (from_single_file)
    if gguf:
        try:
            import diffusers

            gguf_ok = hasattr(getattr(diffusers, gguf, None), "from_single_file")
        except ImportError:  # pragma: no cover
            gguf_ok = False
    else:
        gguf_ok = False
    return {
        "txt2img": yes if fam.supports("txt2img") else "-",
        "img2img": ("edit" if fam.edit else yes) if fam.supports("img2img") else "-",
        "inpaint": yes if fam.supports("inpaint") else "-",
        "ControlNet": ", ".join(cn) if cn else "-",
        "LoRA": yes if _has_lora(fam) else "-",
        "previews": ", ".join(previews) or "-",
        "single files": ", ".join(_config_label(c) for c in fam.configs) or "-",
        "GGUF": yes if gguf_ok else "-",
    }


def render_capabilities(fams: Iterable[Family] | None = None) -> str:
    """The Markdown table: one row per family."""
    fams = tuple(fams) if fams is not None else all_families()
    rows = ["| family | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for fam in fams:
        row = capability_row(fam)
        rows.append(f"| {fam.label} | " + " | ".join(row[c] for c in COLUMNS) + " |")
    return "\n".join(rows)
