"""``studio control``: make ControlNet control images.

    studio control canny --image I [--low L --high H] [--blur K] --out OUT
    studio control pose  --image I [--model M] --out OUT [--json KEYPOINTS.json]
    studio control pose  --template [--people N] (--image I | --size WxH) --out OUT [--json J]
    studio control pose  --from-json KEYPOINTS.json --out OUT
    studio control depth --image I [--model M] [--region X,Y,W,H] --out DEPTH

``pose`` detects people (``--model``: a folder holding DWPose's yolox_l.onnx +
dw-ll_ucoco_384.onnx or OpenPose's body_pose_model.pth, such a file, or the catalog id
``dwpose`` / ``openpose``; default: installed DWPose if onnxruntime is available, else
OpenPose), with hands and faces (DWPose always; OpenPose when hand_pose_model.pth /
facenet.pth sit beside the body model). Without a detector it exits 3 and says how to get
one; ``--template`` renders a default skeleton instead and ``--from-json`` renders OpenPose
JSON (e.g. from a pose editor).
``depth`` estimates a depth map with Depth Anything V2 (Yang et al. 2024): grey, near =
white, the input's size (or the ``--region`` crop's size), as depth ControlNets expect
(``--model``: a transformers Depth Anything folder, or the catalog id
``depth-anything-v2-small``, the default). Without the model it exits 3 and says how to get
it.
Exit codes: 0 done, 2 bad input, 3 model missing, 130 cancelled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from studio.cli import args as shared
from studio.cli.jobs import ProgressLine, finished_or_raise, run_job
from studio.core.errors import BadInput


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "control",
        help="make ControlNet control images (canny edges, OpenPose skeletons, depth maps)",
        description="Make a ControlNet control image from a picture: Canny edges, an "
        "OpenPose skeleton (detected, a default template, or read from OpenPose JSON) or a "
        "depth map (Depth Anything V2).",
    )
    sub = p.add_subparsers(dest="control_kind", metavar="KIND", parser_class=type(p))
    sub.required = True

    c = sub.add_parser("canny", help="Canny edge map (white edges on black)")
    c.add_argument("--image", required=True, help="input image")
    c.add_argument("--low", type=float, default=100.0, help="low hysteresis threshold (100)")
    c.add_argument("--high", type=float, default=200.0, help="high hysteresis threshold (200)")
    c.add_argument("--blur", type=int, default=0, help="Gaussian blur kernel px first (0 = off)")
    c.add_argument("--out", required=True, help="output image (.png, .jpg, .webp)")
    c.set_defaults(func=run_canny)

    q = sub.add_parser("pose", help="OpenPose skeleton image (and keypoints JSON)")
    q.add_argument("--image", help="input image (needed unless --from-json)")
    q.add_argument(
        "--model",
        help="pose detector: 'dwpose', 'openpose', or a folder/file of either "
        "(default: the installed one, DWPose first)",
    )
    q.add_argument("--out", required=True, help="output control image (.png, .jpg, .webp)")
    q.add_argument("--json", metavar="KEYPOINTS.json", help="also write the keypoints here")
    q.add_argument(
        "--template",
        action="store_true",
        help="no detection: render a default standing skeleton (size of --image or --size)",
    )
    q.add_argument("--people", type=int, default=1, help="--template: how many skeletons (1)")
    q.add_argument("--size", metavar="WxH", help="--template canvas size without --image")
    q.add_argument("--from-json", metavar="FILE", help="render OpenPose JSON instead")
    q.add_argument("--no-hands", action="store_true", help="skip hands (detection and drawing)")
    q.add_argument("--no-face", action="store_true", help="skip the face (detection and drawing)")
    shared.add_device(q, dtype=False)
    q.set_defaults(func=run_pose)

    d = sub.add_parser("depth", help="depth map, near = white (Depth Anything V2)")
    d.add_argument("--image", required=True, help="input image")
    d.add_argument(
        "--model",
        help="Depth Anything folder, catalog id or Hugging Face repo id "
        "(default: the installed depth-anything-v2-small)",
    )
    d.add_argument(
        "--region",
        metavar="X,Y,W,H",
        help="estimate only this crop of the image (the output is the crop's size)",
    )
    d.add_argument("--out", required=True, help="output depth image (.png, .jpg, .webp)")
    shared.add_device(d, dtype=False)
    d.set_defaults(func=run_depth)


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise BadInput(f"{out.name}: unsupported output format (use .png, .jpg or .webp)")
    if not out.parent.exists():
        raise BadInput(f"{out.parent}: output folder does not exist")
    return out


def run_canny(args: argparse.Namespace) -> int:
    from studio.core.canny import canny
    from studio.core.imageio import load_image, save_image

    out = _check_out(args.out)
    if not (0 <= args.low <= 10000 and 0 <= args.high <= 10000):
        raise BadInput("--low/--high must be between 0 and 10000")
    if args.blur < 0 or args.blur > 99:
        raise BadInput("--blur must be between 0 and 99")
    image = load_image(args.image)
    edges = canny(image, args.low, args.high, blur=args.blur)
    meta = {"control": "canny", "low": args.low, "high": args.high, "blur": args.blur}
    save_image(out, edges, studio=meta)
    print(f"{out} (canny {args.low:g}/{args.high:g}, {(edges[..., 0] > 0).mean():.1%} edges)")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise BadInput(f"--size {text!r}: expected WxH, e.g. 512x768") from e
    if not (8 <= w <= 16384 and 8 <= h <= 16384):
        raise BadInput(f"--size {text!r}: each side must be 8..16384 px")
    return w, h


def run_pose(args: argparse.Namespace) -> int:
    from studio.core.imageio import load_image, save_image
    from studio.core.pose import Pose, default_pose

    out = _check_out(args.out)
    json_out = Path(args.json) if args.json else None
    if json_out is not None and not json_out.parent.exists():
        raise BadInput(f"{json_out.parent}: output folder does not exist")
    if args.template and args.from_json:
        raise BadInput("use --template or --from-json, not both")
    if not 1 <= args.people <= 16:
        raise BadInput("--people must be between 1 and 16")

    if args.from_json:
        size = None
        if args.image:
            img = load_image(args.image)
            size = (img.shape[1], img.shape[0])
        pose = Pose.load(args.from_json, *(size or (None, None)))
        source = "json"
    elif args.template:
        if args.image:
            img = load_image(args.image)
            w, h = img.shape[1], img.shape[0]
        elif args.size:
            w, h = _parse_size(args.size)
        else:
            raise BadInput("--template needs --image or --size WxH for the canvas size")
        pose = default_pose(w, h, people=args.people)
        source = "template"
    else:
        if not args.image:
            raise BadInput("--image is required (or --template / --from-json)")
        image = load_image(args.image)
        pose = _detect(image, args.model, args.device, not args.no_hands, not args.no_face)
        source = "detected"

    control = pose.render(hands=not args.no_hands, face=not args.no_face)
    save_image(out, control, studio={"control": "pose", "source": source, "pose": pose.to_dict()})
    if json_out is not None:
        pose.save(json_out)
    extra = f", keypoints: {json_out}" if json_out else ""
    n = len(pose.people)
    print(f"{out} ({source}, {n} {'person' if n == 1 else 'people'}{extra})")
    return 0


def _detect(image, model: str | None, device: str | None, hands: bool, face: bool):
    from dataclasses import replace

    from studio.core.pose import Pose
    from studio.engine.jobs import Failed, PreprocessRequest, Runner

    params = (("hands", hands), ("face", face)) + ((("model", model),) if model else ())
    request = PreprocessRequest("pose", image, params, device=device)
    final = run_job(request, runner=Runner(device=device), line=ProgressLine("pose", plain=False))
    if isinstance(final, Failed) and final.exit_code == 3:
        final = replace(
            final, message=final.message + " (or use --template for a default skeleton)"
        )
    return Pose.from_dict(finished_or_raise(final).extra["pose"])


def _parse_region(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError as e:
        raise BadInput(f"--region {text!r}: expected X,Y,W,H, e.g. 0,0,512,512") from e
    return x, y, w, h


def run_depth(args: argparse.Namespace) -> int:
    from studio.core.imageio import load_image, save_image
    from studio.engine.jobs import PreprocessRequest, Runner

    out = _check_out(args.out)
    region = _parse_region(args.region) if args.region else None
    image = load_image(args.image, "RGB")
    params: tuple[tuple[str, object], ...] = ()
    if args.model:
        params += (("model", args.model),)
    if region is not None:
        params += (("region", region),)
    request = PreprocessRequest("depth", image, params, device=args.device)
    final = run_job(
        request, runner=Runner(device=args.device), line=ProgressLine("depth", plain=False)
    )
    done = finished_or_raise(final)
    depth, meta = done.images[0], done.metadata[0]
    save_image(out, depth, studio=meta)
    print(f"{out} (depth, {depth.shape[1]}x{depth.shape[0]}, {meta['model']})")
    return 0
