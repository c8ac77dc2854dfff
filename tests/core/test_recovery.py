"""Crash recovery files (studio.core.recovery): where the autosave goes, which autosaves
count as left by a crash, and what happens to them once offered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from studio.core import recovery
from studio.core.document import Document, load_project

DEAD = 2**22 + 12345  # above Linux's largest pid_max: never a running process


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "nested" / "studio-home"  # not created yet
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


def _doc(value=7):
    return Document.from_image(np.full((8, 12, 3), value, np.uint8), "photo")


def _names(found):
    return [(p.name, source) for p, source in found]


def test_recovery_folder_is_created_under_the_data_dir(home):
    folder = recovery.recovery_dir()
    assert folder == home / "recovery" and folder.is_dir()
    assert recovery.recovery_dir() == folder  # a second call finds it there
    assert recovery.data_dir() == home


def test_autosave_is_named_for_this_process_or_the_given_pid(home):
    assert recovery.recovery_path() == home / "recovery" / f"autosave-{os.getpid()}.studio"
    assert recovery.recovery_path(4321) == home / "recovery" / "autosave-4321.studio"


def test_write_recovery_saves_the_document_and_a_sidecar(home):
    path = recovery.write_recovery(_doc(9), "/photos/cat.studio", pid=DEAD)
    assert path == home / "recovery" / f"autosave-{DEAD}.studio"
    doc = load_project(path)
    assert (doc.width, doc.height) == (12, 8)
    assert (doc.layers[0].pixels[..., :3] == 9).all()
    sidecar = json.loads((home / "recovery" / f"autosave-{DEAD}.json").read_text())
    assert sidecar == {"source": "/photos/cat.studio", "pid": DEAD}


def test_sidecar_names_this_process_when_no_pid_is_given(home):
    recovery.write_recovery(_doc(), None)
    sidecar = json.loads((home / "recovery" / f"autosave-{os.getpid()}.json").read_text())
    assert sidecar == {"source": None, "pid": os.getpid()}


def test_a_new_autosave_replaces_the_previous_one(home):
    recovery.write_recovery(_doc(1), "/a.studio", pid=DEAD)
    recovery.write_recovery(_doc(2), "/b.studio", pid=DEAD)
    ((path, source),) = recovery.orphaned_recoveries()
    assert source == "/b.studio"
    assert (load_project(path).layers[0].pixels[..., :3] == 2).all()


def test_clean_exit_removes_the_autosave_and_sidecar(home):
    recovery.write_recovery(_doc(), "/a.studio")
    recovery.write_recovery(_doc(), "/b.studio", pid=DEAD)
    recovery.clear_recovery()
    assert sorted(p.name for p in recovery.recovery_dir().iterdir()) == [
        f"autosave-{DEAD}.json",
        f"autosave-{DEAD}.studio",
    ]
    recovery.clear_recovery(DEAD)
    assert list(recovery.recovery_dir().iterdir()) == []
    recovery.clear_recovery(DEAD)  # nothing left to remove is fine


def test_only_sessions_no_longer_running_are_orphans(home):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        recovery.write_recovery(_doc(), "/mine.studio")  # this process
        recovery.write_recovery(_doc(), "/other.studio", pid=live.pid)  # another, running
        recovery.write_recovery(_doc(), "/crashed.studio", pid=DEAD)
        assert _names(recovery.orphaned_recoveries()) == [
            (f"autosave-{DEAD}.studio", "/crashed.studio")
        ]
        with pytest.raises(subprocess.TimeoutExpired):  # looking never disturbs it
            live.wait(0.3)
    finally:
        live.kill()
        live.wait(10)
    # Once that session ends without clearing its file, it is an orphan too.
    assert sorted(_names(recovery.orphaned_recoveries())) == sorted(
        [
            (f"autosave-{DEAD}.studio", "/crashed.studio"),
            (f"autosave-{live.pid}.studio", "/other.studio"),
        ]
    )


def test_own_pid_file_at_start_up_is_an_earlier_session(home):
    recovery.write_recovery(_doc(), "/earlier.studio")
    assert recovery.orphaned_recoveries() == []
    assert _names(recovery.orphaned_recoveries(own_pid_is_orphan=True)) == [
        (f"autosave-{os.getpid()}.studio", "/earlier.studio")
    ]


def test_a_running_session_of_another_user_is_not_an_orphan(home, monkeypatch):
    recovery.write_recovery(_doc(), "/theirs.studio", pid=DEAD)

    def not_yours(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_yours)
    assert recovery.orphaned_recoveries() == []


def test_on_windows_a_leftover_file_counts_as_a_crash(home, monkeypatch):
    recovery.write_recovery(_doc(), "/mine.studio")
    recovery.write_recovery(_doc(), "/other.studio", pid=os.getppid())  # running
    monkeypatch.setattr(recovery.os, "name", "java")  # any platform but POSIX
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("no signals off POSIX"))
    assert _names(recovery.orphaned_recoveries()) == [
        (f"autosave-{os.getppid()}.studio", "/other.studio")
    ]


def test_live_sessions_do_not_hide_the_crashed_ones_after_them(home):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Sorted by name: the live session comes before the crashed "9999999" one.
        recovery.write_recovery(_doc(), "/live.studio", pid=live.pid)
        recovery.write_recovery(_doc(), "/crashed.studio", pid=9_999_999)
        assert _names(recovery.orphaned_recoveries()) == [
            ("autosave-9999999.studio", "/crashed.studio")
        ]
    finally:
        live.kill()
        live.wait(10)


def test_files_not_named_by_a_pid_are_skipped_not_fatal(home):
    folder = recovery.recovery_dir()
    (folder / "autosave-.studio").write_bytes(b"stray")  # sorts before every pid
    (folder / "autosave-copy.studio").write_bytes(b"stray")
    (folder / f"autosave-{DEAD}-copy.studio").write_bytes(b"stray")
    (folder / f"autosave-copy-{DEAD + 1}.studio").write_bytes(b"stray")
    (folder / "notes.txt").write_text("not an autosave")
    recovery.write_recovery(_doc(), "/crashed.studio", pid=DEAD)
    assert _names(recovery.orphaned_recoveries()) == [
        (f"autosave-{DEAD}.studio", "/crashed.studio")
    ]


@pytest.mark.parametrize("sidecar", [None, "{not json", '{"pid": 5}'])
def test_missing_or_damaged_sidecar_still_offers_the_autosave(home, sidecar):
    path = recovery.write_recovery(_doc(), "/lost.studio", pid=DEAD)
    info = path.with_suffix(".json")
    if sidecar is None:
        info.unlink()
    else:
        info.write_text(sidecar)
    assert recovery.orphaned_recoveries() == [(path, None)]


def test_set_aside_keeps_an_unreadable_file_but_stops_offering_it(home):
    path = recovery.write_recovery(_doc(), "/bad.studio", pid=DEAD)
    data = path.read_bytes()
    kept = recovery.set_aside(path)
    assert kept == path.with_name(f"autosave-{DEAD}.studio.unreadable")
    assert kept.read_bytes() == data
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert recovery.orphaned_recoveries() == []
    recovery.set_aside(path)  # already gone: nothing to do, no error


def test_set_aside_still_drops_the_sidecar_when_the_rename_fails(home, monkeypatch):
    path = recovery.write_recovery(_doc(), "/bad.studio", pid=DEAD)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(recovery.os, "replace", refuse)
    recovery.set_aside(path)
    assert path.exists() and not path.with_suffix(".json").exists()


def test_discard_removes_the_autosave_and_its_sidecar(home):
    path = recovery.write_recovery(_doc(), "/a.studio", pid=DEAD)
    other = recovery.write_recovery(_doc(), "/b.studio", pid=DEAD + 1)
    path.with_suffix(".json").unlink()  # a missing sidecar is fine
    recovery.discard(path)
    assert not path.exists()
    assert _names(recovery.orphaned_recoveries()) == [(other.name, "/b.studio")]
    recovery.discard(path)  # already gone
