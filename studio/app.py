"""Start the desktop app: a start-up frame on screen first, then the main window, then the
engine (torch, diffusers) in the worker thread, so Studio is on screen at once.

What the first paint used to wait for (measured with ``python -X importtime`` and
``time.process_time()`` per phase, see benchmarks/RESULTS.md): importing
``studio.ui.main_window`` and its rooms, most of it PySide6 building Python enum classes for
the ``Qt`` namespace (~150 enums, about 40 ms of CPU: 20% of a bare PySide6 window) and for the
other Qt classes the window module imports at its top, then the CLI's argparse. So the first
frame is painted by a plain ``QMainWindow`` made here from the classes a bare window needs
(themed, titled, with the icon and the saved geometry, "Starting Studio…"); the real window
is imported, built and shown in its place on the next turn of the event loop.

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

    from studio.ui.placement import keep_on_screen
    from studio.ui.settings import Settings
    from studio.ui.theme import app_icon, apply_theme

    settings = Settings()
    apply_theme(app, settings.theme)
    app.setWindowIcon(app_icon())
    frame = _startup_frame(settings)
    frame.show()
    probe = os.environ.get("STUDIO_STARTUP_PROBE")
    window = None

    def report(what: str) -> None:
        t = time.perf_counter() - _T0
        cpu = time.process_time()  # CPU seconds of the whole process (robust to a busy machine)
        print(f"STUDIO_{what} {t:.4f} torch={'torch' in sys.modules} cpu={cpu:.4f}", flush=True)

    def build() -> None:
        nonlocal window
        if probe:
            report("SHOWN")
        from studio.ui.main_window import MainWindow

        window = MainWindow(settings, deferred=True)
        window.finish_startup()
        if frame.isMaximized():
            window.showMaximized()
        else:
            # The frame's place, decorations included (move() is a frame position): its
            # client geometry, taken before the window manager has placed it, would put the
            # new title bar above the screen.
            window.resize(frame.size())
            window.move(frame.pos())
            keep_on_screen(window)
            window.show()
            keep_on_screen(window)  # now with the real decorations
        frame.close()
        frame.deleteLater()
        QTimer.singleShot(0, after_build)

    def after_build() -> None:
        if probe:
            report("READY")
            window.close()
            app.quit()
            return
        window.jobs.start_engine()
        window.documents.offer_recovery()
        if files:
            window.documents.open_paths(files)

    QTimer.singleShot(0, build)
    code = app.exec()
    if window is not None and window.built and window.worker.thread_running():
        # A job stuck in native code did not stop within the shutdown timeout: exit without
        # destroying the running QThread (which would abort the process).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _startup_frame(settings):
    """The first frame: a bare QMainWindow (no ``Qt`` namespace, no window module), with the
    main window's title, icon, theme and saved geometry (or, the first time, centred in the
    screen's available area at up to 1280x800: ``placement.place_window``)."""
    from PySide6.QtWidgets import QLabel, QMainWindow

    from studio.ui.placement import place_window

    frame = QMainWindow()
    frame.setWindowTitle("Studio")
    place_window(frame, settings.geometry)
    label = QLabel("Starting Studio…")
    label.setStyleSheet("qproperty-alignment: AlignCenter;")  # no Qt.AlignmentFlag import
    frame.setCentralWidget(label)
    return frame


if __name__ == "__main__":
    raise SystemExit(main())
