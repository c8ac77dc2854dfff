"""Vision: ControlNet preprocessors (Canny, scribble) and pose detectors (DWPose, OpenPose)."""

from studio.engine._lazy import lazy_face

__all__ = ["PoseDetector", "load_body_model", "run_preprocess"]

_EXPORTS = {
    "run_preprocess": "control",
    "PoseDetector": "pose_detect",
    "load_body_model": "pose_detect",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
