"""What both diffusion tracks use: model files and configs (``loader``), LoRA files
(``lora``), step previews and their decoders (``previews``), the memory planner
(``memory``, ``memory_models``, ``placement``), compile/channels-last (``speed``), a model's
family and defaults (``defaults``) and the capability table (``capabilities``)."""
