"""Model families as descriptors: one :class:`Family` per family (sd1, sd2, sdxl; see
``base.py`` for how to add one) and the registry that recognises which family a folder, a
loaded pipeline, a single file or a ControlNet belongs to. Torch-free to import."""

from studio.engine.diffusion.families.base import (
    TASK_KEYS,
    TASKS,
    Family,
    ModelInfo,
    TensorProbe,
)
from studio.engine.diffusion.families.registry import (
    FileMatch,
    config_family,
    controlnet_family,
    families,
    family,
    family_labels,
    folder_info,
    pipe_info,
    probe_file,
    recognise,
    recognise_file,
    recognise_folder,
    recognise_pipe,
)

__all__ = [
    "TASKS",
    "TASK_KEYS",
    "Family",
    "FileMatch",
    "ModelInfo",
    "TensorProbe",
    "config_family",
    "controlnet_family",
    "families",
    "family",
    "family_labels",
    "folder_info",
    "pipe_info",
    "probe_file",
    "recognise",
    "recognise_file",
    "recognise_folder",
    "recognise_pipe",
]
