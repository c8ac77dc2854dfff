"""Feature panels docked by the main window; each takes a ``studio.ui.host.Host``."""
