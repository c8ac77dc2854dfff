"""Atomic file writes (studio.core.atomic): the old file survives any failed save, the new
bytes are on disk before the rename, and temp files never pile up."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from studio.core import atomic
from studio.core.atomic import atomic_write_bytes, atomic_writer
from studio.core.errors import StudioError


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_write_creates_and_replaces_the_file(tmp_path):
    target = tmp_path / "image.png"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(str(target), b"second, longer")  # a str path works as well
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]


def test_relative_path_writes_into_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write_bytes("here.bin", b"data")
    assert (tmp_path / "here.bin").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.bin"]


def test_temp_file_is_hidden_beside_the_target_while_writing(tmp_path):
    target = tmp_path / "work.studio"
    with atomic_writer(target) as f:
        f.write(b"half")
        (name,) = _temps(tmp_path)
        # Same folder (a rename within one file system), hidden, named for the file it saves.
        assert name.startswith(".work.studio.") and name.endswith(".tmp")
        assert not target.exists()
    assert target.read_bytes() == b"half"


def test_bytes_are_flushed_and_synced_before_the_rename(tmp_path, monkeypatch):
    """A power cut right after the rename must not leave an empty or short file: the data is
    in the temp file and fsync'd when the rename happens, then the folder is synced."""
    target = tmp_path / "work.bin"
    data = b"x" * 10_000
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync-dir",) if stat.S_ISDIR(st.st_mode) else ("fsync", st.st_size))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.getsize(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(target, data)
    assert events == [
        ("fsync", len(data)),
        ("replace", len(data), os.fspath(target)),
        ("fsync-dir",),
    ]
    assert target.read_bytes() == data


def test_folder_sync_is_skipped_where_it_is_not_possible(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "name", "java")  # any platform but POSIX
    opened = []
    real_open = os.open

    def track_open(path, *a, **k):
        if os.path.isdir(path):
            opened.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", track_open)
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert opened == []
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_a_folder_that_cannot_be_synced_does_not_fail_the_save(tmp_path, monkeypatch):
    real_open = os.open

    def refuse_folders(path, *a, **k):
        if os.path.isdir(path):
            raise OSError(errno.EACCES, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", refuse_folders)
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_folder_fd_is_closed_even_when_its_sync_fails(tmp_path, monkeypatch):
    opened, closed = [], []
    real_open, real_close, real_fsync = os.open, os.close, os.fsync

    def track_open(path, *a, **k):
        fd = real_open(path, *a, **k)
        if os.path.isdir(path):
            opened.append(fd)
        return fd

    def track_close(fd):
        closed.append(fd)
        real_close(fd)

    def fsync(fd):
        if fd in opened:
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", track_open)
    monkeypatch.setattr(os, "close", track_close)
    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert opened and set(opened) <= set(closed)
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_failed_rename_keeps_old_file_and_says_which_file(tmp_path, monkeypatch):
    target = tmp_path / "work.bin"
    atomic_write_bytes(target, b"old")

    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StudioError) as err:
        atomic_write_bytes(target, b"new")
    assert "Could not save work.bin" in err.value.message
    assert "Permission denied" in err.value.message
    assert "PermissionError" in err.value.detail  # the exception, for the details pane
    assert isinstance(err.value.__cause__, OSError)
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_os_error_without_strerror_still_explains_itself(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("the share went away")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StudioError, match="Could not save a.bin: the share went away"):
        atomic_write_bytes(tmp_path / "a.bin", b"new")


@pytest.mark.parametrize("exc", [ValueError("bad data"), KeyboardInterrupt()])
def test_any_error_inside_the_block_keeps_old_file_and_propagates_unchanged(tmp_path, exc):
    target = tmp_path / "work.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(type(exc)) as err:
        with atomic_writer(target) as f:
            f.write(b"partial")
            raise exc
    assert err.value is exc  # not wrapped: only file-system errors become StudioError
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_missing_folder_is_reported_with_the_folder(tmp_path):
    folder = tmp_path / "gone"
    with pytest.raises(StudioError) as err:
        atomic_write_bytes(folder / "a.bin", b"data")
    assert f"Cannot write to {folder}" in err.value.message
    assert "No such file or directory" in err.value.message
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_temp_file_creation_error_without_strerror(tmp_path, monkeypatch):
    def refuse(**kw):
        raise OSError("quota exceeded")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(StudioError, match="Cannot write to .*: quota exceeded"):
        atomic_write_bytes(tmp_path / "a.bin", b"data")


def test_stale_temps_older_than_a_minute_are_removed_by_the_next_save(tmp_path):
    target = tmp_path / "work.bin"
    old = tmp_path / ".work.bin.abc123.tmp"  # left by a save killed a while ago
    running = tmp_path / ".work.bin.def456.tmp"  # a save that may still be running
    other = tmp_path / ".other.bin.ghi789.tmp"  # another file's save
    for p in (old, running, other):
        p.write_bytes(b"partial")
    _age(old, 60.5)
    _age(running, 59.5)
    _age(other, 3600)
    atomic_write_bytes(target, b"new")
    assert not old.exists()
    assert running.exists() and other.exists()
    assert target.read_bytes() == b"new"


def test_stale_temps_are_found_for_names_with_glob_characters(tmp_path):
    target = tmp_path / "shot[1].png"
    stale = tmp_path / ".shot[1].png.abc123.tmp"
    lookalike = tmp_path / ".shot1.png.abc123.tmp"  # matches the unescaped pattern
    for p in (stale, lookalike):
        p.write_bytes(b"partial")
        _age(p, 3600)
    atomic_write_bytes(target, b"new")
    assert not stale.exists()
    assert lookalike.exists()


def test_a_stale_temp_that_cannot_be_removed_does_not_stop_the_save(tmp_path, monkeypatch):
    target = tmp_path / "work.bin"
    first = tmp_path / ".work.bin.aaa.tmp"
    second = tmp_path / ".work.bin.bbb.tmp"
    for p in (first, second):
        p.write_bytes(b"partial")
        _age(p, 3600)
    real_unlink = type(first).unlink

    def unlink(self, *a, **k):
        if self.name == first.name:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(type(first), "unlink", unlink)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert first.exists() and not second.exists()
