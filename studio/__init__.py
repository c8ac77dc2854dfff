"""Studio: a desktop image editor that runs generative models on the user's own machine."""

__version__ = "0.1.0"
