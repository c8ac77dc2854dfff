"""Start the desktop app: QApplication and the main window first, the engine (torch,
diffusers) afterwards in the worker thread, so the window is on screen at once.

``STUDIO_STARTUP_PROBE=1`` makes the app print ``STUDIO_SHOWN <seconds> torch=<bool> cpu=<s>`` once
the window is on screen, ``STUDIO_READY ...`` once canvas, docks and panels are built, and
quit (used by benchmarks/bench_startup.py and the tests).
"""

from __future__ import annotations

import os
import sys
import time

_T0 = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    """Run the app; ``argv`` are files to open (images or .studio projects)."""
    files = list(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "studio"])
    app.setApplicationName("Studio")
    app.setOrganizationName("Studio")
    app.setApplicationDisplayName("Studio")
    app.setDesktopFileName("studio")

    from studio.ui.main_window import MainWindow
    from studio.ui.settings import Settings
    from studio.ui.theme import app_icon, apply_theme

    settings = Settings()
    apply_theme(app, settings.theme)
    app.setWindowIcon(app_icon())
    # On screen first (a frame with menus-to-come), then numpy, the canvas and the panels.
    window = MainWindow(settings, deferred=True)
    window.show()
    probe = os.environ.get("STUDIO_STARTUP_PROBE")

    def report(what: str) -> None:
        t = time.perf_counter() - _T0
        cpu = time.process_time()  # CPU seconds of the whole process (robust to a busy machine)
        print(f"STUDIO_{what} {t:.4f} torch={'torch' in sys.modules} cpu={cpu:.4f}", flush=True)

    def build() -> None:
        if probe:
            report("SHOWN")
        window.finish_startup()
        QTimer.singleShot(0, after_build)

    def after_build() -> None:
        if probe:
            report("READY")
            window.close()
            app.quit()
            return
        window.start_engine()
        window.offer_recovery()
        if files:
            window.open_paths(files)

    QTimer.singleShot(0, build)
    code = app.exec()
    if window.built and window.worker.thread_running():
        # A job stuck in native code did not stop within the shutdown timeout: exit without
        # destroying the running QThread (which would abort the process).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
