"""``studio generate``: txt2img / img2img / SD inpainting / ControlNet / LoRA from the shell.

Outputs: ``--count N`` writes image k (seed S+k) to OUT for k = 0 and to ``OUT-k.ext`` for
k >= 1 (``out.png``, ``out-1.png``, ``out-2.png``...), each with its own metadata, so any one
reproduces alone with ``--seed S+k``. The written paths are printed on stdout, one a line.

The job runs through the CLI's one driver (studio.cli.jobs): Ctrl+C cancels it, progress is one
updating line when stderr is a terminal (nothing on a pipe: stdout carries the paths), and
``--preview-dir`` receives every preview.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, execute, preview_folder, quiet_libraries
from studio.core.errors import BadInput, ModelError

DEFAULT_SIZE = (512, 512)


# -- argument parsing --------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise BadInput(f"--size {text!r}: use WIDTHxHEIGHT, e.g. 512x768")
    return int(m.group(1)), int(m.group(2))


def _split_weight(text: str, what: str) -> tuple[str, float | None]:
    """'thing:0.7' -> ('thing', 0.7); 'C:\\x\\y.safetensors' keeps its drive colon."""
    head, sep, tail = text.rpartition(":")
    if sep and head and not re.fullmatch(r"[A-Za-z]", head):
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, None


def parse_lora(text: str):
    from studio.engine.jobs import LoraSpec

    path, weight = _split_weight(text, "--lora")
    if not Path(path).expanduser().is_file():
        raise ModelError(f"--lora {text}: no such LoRA file {path}")
    return LoraSpec(str(Path(path).expanduser()), 1.0 if weight is None else weight)


def parse_control(text: str, model: str):
    """KIND:IMAGE[:WEIGHT] -> ControlInput with the image loaded (RGB)."""
    from studio.core.imageio import load_image
    from studio.engine.jobs import ControlInput

    kind, sep, rest = text.partition(":")
    if not sep or not kind or not rest:
        raise BadInput(f"--control {text!r}: use KIND:IMAGE[:WEIGHT], e.g. canny:edges.png")
    path, weight = _split_weight(rest, "--control")
    if not Path(path).expanduser().exists():
        raise BadInput(f"--control {text}: no such file {path}")
    image = load_image(Path(path).expanduser(), mode="RGB")
    return ControlInput(
        kind=kind, image=image, model=model, weight=1.0 if weight is None else weight
    )


def register(subparsers) -> None:
    from studio.engine.diffusion import family_labels

    p = subparsers.add_parser(
        "generate",
        help="generate images from a prompt (txt2img, img2img, inpaint, ControlNet, LoRA)",
        description=(
            f"Generate images with a model of one of these families: {family_labels()}. With "
            "--count N, image k (seed S+k) is written to OUT for k=0 and OUT-k.png after that."
        ),
    )
    p.add_argument("--model", required=True, help="catalog id, HF repo id, folder or file")
    shared.add_prompt(p)
    shared.add_sampling(p)
    p.add_argument("--size", help="WIDTHxHEIGHT (default: init image size or 512x512)")
    p.add_argument("--count", type=int, default=1, help="number of images (seeds S, S+1, ...)")
    p.add_argument("--init", help="init image for img2img")
    p.add_argument("--strength", type=float, default=0.75, help="img2img denoising strength")
    p.add_argument("--mask", help="inpainting mask (white = regenerate), with --init")
    p.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="KIND:IMAGE[:WEIGHT]",
        help="ControlNet guide image (repeatable; pair each with --controlnet)",
    )
    p.add_argument(
        "--controlnet", action="append", default=[], metavar="MODEL", help="ControlNet model"
    )
    p.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:WEIGHT]", help="LoRA (repeatable)"
    )
    p.add_argument(
        "--hires", metavar="SCALE[:STEPS[:DENOISE[:UPSCALER]]]",
        help="A1111's Hires. fix: upscale by SCALE (e.g. 2), then img2img for STEPS (0: the "
        "same steps) at DENOISE (default 0.7) with UPSCALER (Latent, Latent (bicubic), "
        "Lanczos, Nearest or an upscaler model's name, e.g. R-ESRGAN 4x+)",
    )  # fmt: skip
    shared.add_model_extras(p)
    shared.add_preview(p)
    shared.add_device(p)
    shared.add_memory(p)
    p.add_argument("--out", required=True, help="output image (.png, .jpg or .webp)")
    p.set_defaults(func=run)


def parse_hires(text: str | None):
    """``--hires SCALE[:STEPS[:DENOISE[:UPSCALER]]]`` -> HiresFix (None when not given)."""
    from studio.engine.jobs.requests import HiresFix

    if not text:
        return None
    parts = text.split(":", 3)
    try:
        scale = float(parts[0])
        steps = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        denoise = float(parts[2]) if len(parts) > 2 and parts[2] else 0.7
    except ValueError:
        raise BadInput(
            f"--hires {text!r}: use SCALE[:STEPS[:DENOISE[:UPSCALER]]], e.g. 2:10:0.45:Latent"
        ) from None
    upscaler = parts[3].strip() if len(parts) > 3 and parts[3].strip() else "Latent"
    return HiresFix(scale=scale, steps=steps, denoise=denoise, upscaler=upscaler)


def output_paths(out: Path, count: int) -> list[Path]:
    return [out] + [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(1, count)]


def build_request(args: argparse.Namespace):
    """Validate every argument and input file and build the GenerateRequest (BadInput on any
    problem, before a model is loaded)."""
    from studio.core.imageio import SAVE_FORMATS, load_image, load_mask
    from studio.engine.diffusion import recommended_settings
    from studio.engine.jobs import GenerateRequest

    out = Path(args.out).expanduser()
    if out.suffix.lower() not in SAVE_FORMATS:
        raise BadInput(f"--out {args.out}: unsupported format (use .png, .jpg or .webp)")
    if not out.parent.exists():
        raise BadInput(f"--out {args.out}: folder {out.parent} does not exist")
    rec = recommended_settings(args.model)
    init = mask = None
    size = parse_size(args.size) if args.size else None
    if args.init:
        init = load_image(Path(args.init).expanduser(), mode="RGB")
        if size is None:
            size = (init.shape[1] // 8 * 8, init.shape[0] // 8 * 8)
    if args.mask:
        if init is None:
            raise BadInput("--mask needs --init (the image to inpaint)")
        mask = load_mask(Path(args.mask).expanduser(), size=(init.shape[1], init.shape[0]))
    if size is None:
        size = (int(rec.get("width", DEFAULT_SIZE[0])), int(rec.get("height", DEFAULT_SIZE[1])))
    if len(args.controlnet) != len(args.control):
        raise BadInput(
            f"{len(args.control)} --control but {len(args.controlnet)} --controlnet: "
            "give one --controlnet MODEL per --control"
        )
    controls = tuple(
        parse_control(c, m) for c, m in zip(args.control, args.controlnet, strict=True)
    )
    loras = tuple(parse_lora(x) for x in args.lora)
    sampling = shared.resolve_sampling(args, args.model, rec)
    memory = shared.resolve_memory(args, rec.get("family"))
    request = GenerateRequest(
        model=args.model,
        prompt=args.prompt,
        negative_prompt=args.negative or "",
        steps=sampling["steps"],
        guidance=sampling["guidance"],
        seed=sampling["seed"],
        width=size[0],
        height=size[1],
        scheduler=sampling["scheduler"],
        count=args.count,
        init_image=init,
        strength=args.strength,
        mask=mask,
        controls=controls,
        loras=loras,
        preview=shared.resolve_preview(args),
        preview_of=args.preview_of,
        device=args.device,
        dtype=args.dtype,
        vae=args.vae,
        clip_skip=args.clip_skip,
        quant=memory["quant"],
        offload=memory["offload"],
        hires=parse_hires(args.hires),
    )
    from studio.engine.diffusion import validate_request
    from studio.engine.diffusion.sd.hires import validate_hires

    if mask is None:
        validate_request(request)
    validate_hires(request)
    return request, out


def run(args: argparse.Namespace) -> int:
    from studio.core.imageio import save_image
    from studio.core.metadata import format_parameters

    request, out = build_request(args)
    preview_dir = preview_folder(args.preview_dir)
    quiet_libraries()
    final = execute(request, line=ProgressLine("generate", plain=False), preview_dir=preview_dir)
    paths = output_paths(out, len(final.images))
    metas = list(final.metadata) + [{}] * (len(final.images) - len(final.metadata))
    for path, image, meta in zip(paths, final.images, metas, strict=True):
        save_image(path, image, parameters=format_parameters(meta) if meta else None, studio=meta)
        print(path)
    return 0
