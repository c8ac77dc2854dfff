"""ControlNet preprocessing jobs (``PreprocessRequest``): Canny edges (params low, high,
blur), scribbles from painted strokes (threshold), pose detection (params model, hands,
face) with DWPose through onnxruntime or the OpenPose networks (see
``pose_detect.find_pose_model``), and depth maps (params model, region) with Depth Anything
V2 (Yang et al. 2024; see ``depth.find_depth_model``). The pose job returns the rendered
control image and the keypoints as OpenPose JSON in ``Finished.extra["pose"]``; the depth
job returns a grey (H, W) uint8 image, near = white, of the image's size or of the
``region`` (x, y, w, h) crop's size."""

from __future__ import annotations

from studio.core.canny import DEFAULT_HIGH, DEFAULT_LOW, canny, scribble_from_layer
from studio.core.errors import BadInput
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import PreprocessRequest
from studio.engine.jobs.runner import JobContext

KINDS = ("canny", "scribble", "pose", "depth")


def _number(req: PreprocessRequest, name: str, default: float) -> float:
    value = req.param(name, default)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise BadInput(f"{req.kind}: {name} must be a number, not {value!r}") from e


def run_preprocess(ctx: JobContext, req: PreprocessRequest) -> Finished:
    image = req.image
    if image is None or getattr(image, "ndim", 0) not in (2, 3) or image.size == 0:
        raise BadInput("preprocess: no image given")
    kind = req.kind.lower()
    if kind == "canny":
        low = _number(req, "low", DEFAULT_LOW)
        high = _number(req, "high", DEFAULT_HIGH)
        blur = int(_number(req, "blur", 0))
        ctx.progress(0, 1)
        ctx.check()  # a cancel while the event was delivered: no work after it
        out = canny(image, low, high, blur=blur)
        ctx.check()
        ctx.progress(1, 1)
        meta = {"control": "canny", "low": low, "high": high, "blur": blur}
        return ctx.finished([out], [meta])
    if kind == "scribble":
        ctx.progress(0, 1)
        ctx.check()
        out = scribble_from_layer(image, int(_number(req, "threshold", 32)))
        ctx.progress(1, 1)
        return ctx.finished([out], [{"control": "scribble"}])
    if kind == "pose":
        return _run_pose(ctx, req)
    if kind == "depth":
        return _run_depth(ctx, req)
    raise BadInput(f"Unknown preprocessor {req.kind!r} (use one of: {', '.join(KINDS)})")


def _run_pose(ctx: JobContext, req: PreprocessRequest) -> Finished:
    from studio.engine.vision.pose_detect import find_pose_model, load_detector

    model = req.param("model") or None
    kind, path = find_pose_model(str(model) if model else None)  # ModelError if none
    ctx.progress(0, 3, "loading pose model")
    detector = ctx.runner.cache(
        f"pose:{kind}:{path}:{req.device or ''}",
        lambda: load_detector(kind, path, req.device),
    )
    ctx.check()
    ctx.progress(1, 3, "detecting")
    pose = detector.detect(  # type: ignore[union-attr]
        req.image,
        check=ctx.check,
        hands=bool(req.param("hands", True)),
        face=bool(req.param("face", True)),
    )
    ctx.progress(2, 3, "rendering")
    ctx.check()
    image = pose.render()
    ctx.progress(3, 3)
    meta = {
        "control": "pose",
        "detector": kind,
        "model": str(path),
        "people": len(pose.people),
        "hands": detector.has_hands,  # type: ignore[union-attr]
        "face": detector.has_face,  # type: ignore[union-attr]
    }
    return ctx.finished([image], [meta], {"pose": pose.to_dict()})


def _region(req: PreprocessRequest) -> tuple[int, int, int, int] | None:
    value = req.param("region")
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError("a string")
        x, y, w, h = (int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as e:
        raise BadInput(f"depth: region must be (x, y, w, h), not {value!r}") from e
    return x, y, w, h


def _run_depth(ctx: JobContext, req: PreprocessRequest) -> Finished:
    from studio.engine.vision.depth import (
        CATALOG_ID,
        crop_region,
        estimate_depth,
        find_depth_model,
        load_depth_model,
    )

    region = _region(req)
    image = crop_region(req.image, region)  # a bad region is BadInput before any model lookup
    model = req.param("model") or None
    path = find_depth_model(str(model) if model else None)  # ModelError if none
    ctx.progress(0, 2, "loading depth model")
    net, processor = ctx.runner.cache(  # type: ignore[misc]
        f"depth:{path}:{req.device or ''}", lambda: load_depth_model(path, req.device)
    )
    ctx.check()
    ctx.progress(1, 2, "estimating depth")
    out = estimate_depth(net, processor, image)
    ctx.check()
    ctx.progress(2, 2)
    meta: dict[str, object] = {"control": "depth", "model": str(model) if model else CATALOG_ID}
    if region is not None:
        meta["region"] = list(region)
    return ctx.finished([out], [meta])
