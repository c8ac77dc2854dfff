"""The engine: torch, diffusers, spandrel. No Qt.

Importing this package (and ``requests``/``events``) stays cheap and torch-free so the UI can
build requests and read events without loading torch; the heavy modules are imported by the
Runner when a job of their kind first runs.
"""
