"""Model files: where they live (store), downloads, import and identification. Torch-free,
so the UI may use it."""

from studio.engine._lazy import lazy_face

__all__ = [
    "Identified",
    "ImportedModel",
    "UnsafePickle",
    "find_installed",
    "find_lora",
    "identify",
    "import_file",
    "installed",
    "list_imported",
    "list_loras",
    "local_pipelines",
    "models_dir",
    "offline_mode",
    "read_tensors",
    "remove_imported",
    "user_folders",
]

_EXPORTS = {
    "Identified": "identify",
    "UnsafePickle": "identify",
    "identify": "identify",
    "read_tensors": "identify",
    "ImportedModel": "importer",
    "find_lora": "importer",
    "import_file": "importer",
    "list_imported": "importer",
    "list_loras": "importer",
    "remove_imported": "importer",
    "find_installed": "store",
    "installed": "store",
    "local_pipelines": "store",
    "models_dir": "store",
    "offline_mode": "store",
    "user_folders": "store",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
