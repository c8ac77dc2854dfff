"""Model files: where they live (folders, store), what is on disk (scan), the one resolver
(resolver), downloads, import and identification, and the model-manager jobs. Torch-free, so
the UI may use it.

For the UI: ``list_models(kind)`` lists what a picker offers (catalog-installed, imported and
dropped files; read from disk on every call); ``resolve(ref, kind)`` turns a reference into a
path. Downloads, imports and scans run as Runner jobs (``DownloadRequest``,
``ImportModelRequest``, ``ScanModelsRequest`` in :mod:`studio.engine.jobs`).

``identify_file`` is :func:`studio.engine.models.identify.identify` (a face name cannot be a
submodule's name: importing the submodule would replace it with the module).
"""

from studio.engine._lazy import lazy_face

__all__ = [
    "KIND_FOLDERS",
    "Embedding",
    "Identified",
    "ImportedModel",
    "ModelChoice",
    "ModelFile",
    "UnsafePickle",
    "embedding_vectors",
    "embeddings_in_prompt",
    "find_installed",
    "find_local",
    "find_lora",
    "folder_models",
    "hf_cache_dir",
    "hf_cached",
    "identify_file",
    "import_file",
    "installed",
    "kind_folders",
    "list_embeddings",
    "list_imported",
    "list_loras",
    "list_models",
    "local_models",
    "local_pipelines",
    "models_dir",
    "offline_mode",
    "read_embedding",
    "read_tensors",
    "remove_imported",
    "resolve",
    "search_roots",
    "spell_triggers",
    "user_folders",
]

_EXPORTS = {
    "Embedding": "embeddings",
    "embedding_vectors": "embeddings",
    "embeddings_in_prompt": "embeddings",
    "list_embeddings": "embeddings",
    "read_embedding": "embeddings",
    "spell_triggers": "embeddings",
    "KIND_FOLDERS": "folders",
    "hf_cache_dir": "folders",
    "kind_folders": "folders",
    "models_dir": "folders",
    "offline_mode": "folders",
    "search_roots": "folders",
    "user_folders": "folders",
    "Identified": "identify",
    "UnsafePickle": "identify",
    "identify_file": "identify",
    "read_tensors": "identify",
    "find_lora": "importer",
    "import_file": "importer",
    "list_loras": "importer",
    "remove_imported": "importer",
    "ImportedModel": "registry",
    "list_imported": "registry",
    "ModelChoice": "resolver",
    "hf_cached": "resolver",
    "list_models": "resolver",
    "resolve": "resolver",
    "ModelFile": "scan",
    "find_local": "scan",
    "folder_models": "scan",
    "local_models": "scan",
    "local_pipelines": "scan",
    "find_installed": "store",
    "installed": "store",
}

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
