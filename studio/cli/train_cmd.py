"""``studio train lora``: DreamBooth LoRA training from the shell (studio.engine.training).

    studio train lora --model M --images DIR --trigger WORD [--class-prompt TEXT]
                      [--steps N] [--rank R] [--lr LR] [--resolution PX] [--resume]
                      [--log LOSS.csv] [--out LORA.safetensors]

The LoRA path is printed on stdout when done (default: Studio's models folder
``lora/<trigger>.safetensors``, where ``--lora NAME`` and ``<lora:NAME:1>`` find it). Progress
goes to stderr: one updating line on a terminal, a line every 5% otherwise. The first Ctrl+C
stops at the end of the current step, saves a checkpoint next to the output and exits 130
(``--resume`` continues exactly there); a second one exits at once. Bad images (none found,
unreadable) are one line and exit 2, before any model loads; a missing model exits 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, error_for, preview_folder, quiet_libraries, run_job
from studio.core.errors import BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a LoRA of your own subject (DreamBooth)",
        description="Train models on your own images.",
    )
    sub = p.add_subparsers(dest="train_kind", metavar="KIND", parser_class=type(p))
    lora = sub.add_parser(
        "lora",
        help="DreamBooth LoRA of an SD 1.5 / SDXL model",
        description=(
            "Train a LoRA (Hu et al. 2021) of an SD 1.5, SD 2.x or SDXL model on a few images "
            "of one subject bound to a trigger word (DreamBooth, Ruiz et al. 2023). Images go "
            "into aspect-ratio buckets (no square crop); image.txt next to image.png is its "
            "caption."
        ),
    )
    lora.add_argument("--model", required=True, help="catalog id, HF repo id, folder or file")
    lora.add_argument(
        "--images", required=True, action="append", metavar="DIR",
        help="folder of training images (or one image; repeatable)",
    )  # fmt: skip
    lora.add_argument("--trigger", required=True, metavar="WORD", help="e.g. sks")
    lora.add_argument(
        "--class-prompt", metavar="TEXT",
        help="the subject's class, e.g. 'a photo of a dog': turns on prior preservation",
    )  # fmt: skip
    lora.add_argument(
        "--prior-preservation", action=argparse.BooleanOptionalAction, default=None,
        help="add the class-image loss (default: on with --class-prompt)",
    )  # fmt: skip
    lora.add_argument("--class-images", type=int, default=100, metavar="N",
                      help="class images to generate (default 100)")  # fmt: skip
    lora.add_argument("--prior-weight", type=float, default=1.0, help="class loss weight")
    g = lora.add_argument_group("training")
    g.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    g.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    g.add_argument("--lr-warmup", type=int, default=0, metavar="N", help="warm-up steps")
    g.add_argument(
        "--resolution", type=int, default=None, metavar="PX",
        help="bucket size, ~PX*PX pixels (default: the model's native size)",
    )  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed (default 0; keep it to --resume)")
    g.add_argument("--batch-size", type=int, default=1, metavar="N")
    g.add_argument("--preset", choices=("12gb",), help="settings for a 12 GB GPU")
    g.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default=None,
        help="default: bf16/fp16 on a GPU, fp32 on the CPU",
    )  # fmt: skip
    g.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default="adamw")
    g.add_argument("--gradient-checkpointing", action="store_true", help="less memory, slower")
    g.add_argument(
        "--no-cache-latents", dest="cache_latents", action="store_false",
        help="encode the images with the VAE every step instead of once",
    )  # fmt: skip
    g.add_argument(
        "--no-cache-text", dest="cache_text", action="store_false",
        help="encode the captions every step instead of once",
    )  # fmt: skip
    shared.add_device(lora, dtype=False)
    s = lora.add_argument_group("samples, checkpoints, log")
    s.add_argument(
        "--sample-every", type=int, default=None, metavar="N",
        help="sample image every N steps (default: with --preview-dir, every ~10%%)",
    )  # fmt: skip
    s.add_argument("--sample-prompt", metavar="TEXT", help="default: the first image's prompt")
    s.add_argument("--sample-steps", type=int, default=20, metavar="N")
    s.add_argument("--preview-dir", metavar="DIR", help="write each sample as step_NNN.png")
    s.add_argument("--checkpoint-every", type=int, default=250, metavar="N",
                   help="checkpoint every N steps (0: only on Ctrl+C and at the end)")  # fmt: skip
    s.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    s.add_argument("--log", metavar="LOSS.csv", help="write step, loss, lr per step as CSV")
    lora.add_argument(
        "--format", choices=("diffusers", "kohya"), default="diffusers",
        help="key names: diffusers (default) or kohya (A1111/ComfyUI)",
    )  # fmt: skip
    lora.add_argument(
        "--out", metavar="LORA.safetensors",
        help="the LoRA file (default: Studio's models folder lora/<trigger>.safetensors)",
    )  # fmt: skip
    lora.set_defaults(func=run)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser) -> int:
    parser.print_usage(sys.stderr)
    print("studio: error: say what to train: `studio train lora ...`", file=sys.stderr)
    return 2


def build_request(args: argparse.Namespace):
    """Check the images, the model reference and every value, and build the TrainLoraRequest
    (BadInput / ModelError before any model loads)."""
    from studio.engine.diffusion.shared.loader import resolve_model
    from studio.engine.jobs import TrainLoraRequest
    from studio.engine.training import (
        apply_preset,
        check_images,
        find_images,
        training_paths,
        validate_request,
    )
    from studio.engine.training.trainer import refuse_flow

    images = find_images(*args.images)
    check_images(images)
    paths = training_paths(args.out, args.trigger or "lora")
    if args.log and not Path(args.log).expanduser().parent.is_dir():
        raise BadInput(f"--log {args.log}: folder {Path(args.log).parent} does not exist")
    prior = args.prior_preservation
    if prior is None:
        prior = bool(args.class_prompt)
    sample_every = args.sample_every
    if sample_every is None:
        sample_every = max(1, min(100, args.steps // 10)) if args.preview_dir else 0
    request = TrainLoraRequest(
        model=args.model,
        images=tuple(str(p) for p in images),
        trigger=args.trigger,
        class_prompt=args.class_prompt,
        steps=args.steps,
        rank=args.rank,
        lr=args.lr,
        resolution=args.resolution,
        seed=args.seed,
        prior_preservation=prior,
        num_class_images=args.class_images,
        prior_weight=args.prior_weight,
        sample_every=sample_every,
        sample_prompt=args.sample_prompt,
        sample_steps=args.sample_steps,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        out=str(paths.out),
        log_csv=str(Path(args.log).expanduser()) if args.log else None,
        batch_size=args.batch_size,
        cache_latents=args.cache_latents,
        cache_text=args.cache_text,
        gradient_checkpointing=args.gradient_checkpointing,
        mixed_precision=args.mixed_precision,
        optimizer=args.optimizer,
        lr_warmup=args.lr_warmup,
        save_format=args.format,
        preset=args.preset,
        device=args.device,
    )
    validate_request(apply_preset(request))
    resolve_model(args.model)  # ModelError (exit 3) for a model that isn't here
    refuse_flow(args.model)
    return request, paths


def run(args: argparse.Namespace) -> int:
    from studio.engine.jobs import Cancelled, Finished

    request, paths = build_request(args)
    preview_dir = preview_folder(args.preview_dir)
    quiet_libraries()
    final = run_job(request, line=ProgressLine("train"), preview_dir=preview_dir)
    if isinstance(final, Cancelled):
        where = paths.checkpoints
        print(
            f"studio: cancelled at step {final.step}; checkpoint in {where} "
            "(run the same command with --resume to continue)",
            file=sys.stderr,
        )
        return 130
    if not isinstance(final, Finished):
        raise error_for(final)
    print(final.extra["path"])
    return 0
