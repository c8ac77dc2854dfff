"""The engine: torch, diffusers, spandrel. No Qt.

By capability, each subpackage with a public face (``__all__``) that the UI and CLI import from:

- ``jobs``: requests, events, the Runner, the device choice (the kernel);
- ``models``: model files, downloads, import, identification, the one resolver;
- ``diffusion``: families, loading, generation, inpainting, previews, samplers, LoRA;
- ``restore``: upscaling, tiling, LaMa;
- ``vision``: ControlNet preprocessors and pose detectors;
- ``fixtures``: tiny random models for the self-test, the tests and the benchmarks.

Importing a face stays cheap and torch-free; the modules behind it load on first use.
"""
