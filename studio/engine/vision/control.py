"""ControlNet preprocessing jobs (``PreprocessRequest``): Canny edges (params low, high,
blur), scribbles from painted strokes (threshold), and pose detection (params model, hands,
face) with DWPose through onnxruntime or the OpenPose networks (see
``pose_detect.find_pose_model``). The pose job returns the rendered control image and the
keypoints as OpenPose JSON in ``Finished.extra["pose"]``."""

from __future__ import annotations

from studio.core.canny import DEFAULT_HIGH, DEFAULT_LOW, canny, scribble_from_layer
from studio.core.errors import BadInput
from studio.engine.jobs.events import Finished
from studio.engine.jobs.requests import PreprocessRequest
from studio.engine.jobs.runner import JobContext

KINDS = ("canny", "scribble", "pose")


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
