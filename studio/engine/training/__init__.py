"""Training: DreamBooth LoRA (Ruiz et al. 2023; Hu et al. 2021) of SD 1.x/2.x and SDXL UNets
with the DDPM objective (Ho et al. 2020, Algorithm 1). The job handler is
``trainer.run_train_lora`` (TrainLoraRequest); ``data`` (images, captions, aspect-ratio
buckets, the batch schedule), ``presets`` (the 12 GB preset, request validation) and
``lora_file`` (reading a LoRA's metadata) are torch-free to import."""

from studio.engine._lazy import lazy_face

__all__ = [
    "IMAGE_SUFFIXES",
    "PRESETS",
    "TrainingPaths",
    "apply_preset",
    "check_images",
    "find_images",
    "make_buckets",
    "nearest_bucket",
    "read_lora_metadata",
    "run_train_lora",
    "sidecar_caption",
    "training_paths",
    "validate_request",
]

_EXPORTS = {
    "IMAGE_SUFFIXES": "data",
    "TrainingPaths": "data",
    "check_images": "data",
    "find_images": "data",
    "make_buckets": "data",
    "nearest_bucket": "data",
    "sidecar_caption": "data",
    "training_paths": "data",
    "PRESETS": "presets",
    "apply_preset": "presets",
    "validate_request": "presets",
    "read_lora_metadata": "lora_file",
    "run_train_lora": "trainer",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
