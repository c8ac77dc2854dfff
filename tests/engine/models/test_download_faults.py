"""Fault branches of URL downloads (studio.engine.models.download) against a local
``ThreadingHTTPServer`` on 127.0.0.1 that misbehaves on purpose: it ignores ``Range``, cuts
the body short, sends wrong bytes, answers 416 or 500, or stalls past the client's read
timeout; plus a ``.part`` file removed before it is stored and a disk that fills mid-download.

Whatever happens, a download ends either with the right file or in ONE clear error: a Studio
error (studio.core.errors) whose message is one line, holds no traceback and names no raw
library exception; nothing half-written is at the final path; a ``.part`` kept for resume is
a prefix of the real file (so a later run can finish it), never stale or foreign bytes.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest

from studio.core.cancel import CancelToken
from studio.core.catalog import Entry
from studio.core.errors import JobCancelled, ModelError, StudioError
from studio.engine.models import download as dl
from studio.engine.models import store

# A few network reads long (READ_SIZE is 256 KiB), small enough to stay fast.
PAYLOAD = os.urandom(3 * dl.READ_SIZE + 4321)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 100_003  # where a truncating / stalling server stops (4 attempts stay short of it all)
STALL_S = 3.0  # longer than the patched client timeout below, shorter than any test budget
CLIENT_TIMEOUT_S = 0.3

# Names that must never reach the user's one-line message.
RAW_NAMES = (
    "Traceback",
    "Error(",
    "Exception",
    "IncompleteRead",
    "RemoteDisconnected",
    "HTTPError",
    "URLError",
    "TimeoutError",
    "socket.",
    "OSError",
    "FileNotFoundError",
    "ConnectionResetError",
    "BrokenPipe",
    "http.client",
    "urllib",
    "_Retryable",
    "errno",
    "\n",
)


class _FaultServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.mode = "ok"
        self.faults_left = 10**6  # how many responses misbehave before it serves normally
        self.requests: list[str | None] = []  # the Range header of each request
        self.agents: list[str | None] = []  # the User-Agent of each request
        self.status = 500  # the answer of mode "status"
        self.release = threading.Event()  # ends any stall at teardown


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    server: _FaultServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append(rng)
        srv.agents.append(self.headers.get("User-Agent"))
        mode = srv.mode
        if srv.faults_left <= 0:
            mode = "ok"
        else:
            srv.faults_left -= 1
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        if mode in ("500", "status"):
            self.send_error(500 if mode == "500" else srv.status)
            return
        if mode == "bad-range" and rng:  # a 206 for other bytes than asked for
            self._send(206, PAYLOAD, {"Content-Range": f"bytes 0-{len(PAYLOAD) - 1}"}, 0)
            return
        if mode == "range-unnamed" and rng:  # a 206 that does not say which bytes
            self._send(206, PAYLOAD, {}, 0)
            return
        if mode == "203-whole":  # a transforming proxy: the whole file, as a 203
            self._send(203, PAYLOAD, {}, len(PAYLOAD))
            self.wfile.write(PAYLOAD)
            return
        if mode == "no-length-close":  # no Content-Length: the body ends when it closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD[:CUT])  # a 200 is the file from its start
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "one-byte-then-stall":
            self._send(200, PAYLOAD, {}, len(PAYLOAD))
            self.wfile.write(PAYLOAD[:1])
            self.wfile.flush()
            srv.release.wait(STALL_S)
            self.close_connection = True
            return
        if mode == "stall-before-body":
            self._send(200, PAYLOAD, {}, len(PAYLOAD))
            self.wfile.flush()
            srv.release.wait(STALL_S)
            self.close_connection = True
            return
        if mode == "416" or (mode == "416-on-range" and rng):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "stall-headers":
            srv.release.wait(STALL_S)
            return
        if mode == "garbage":  # not an HTTP status line at all
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            return
        if mode == "truncate-chunked":  # chunked encoding, cut inside a chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(PAYLOAD) + PAYLOAD[:CUT])
            self.wfile.flush()
            self.close_connection = True
            return
        data = PAYLOAD
        if mode == "wrong-bytes":
            data = bytes(b ^ 0x5A for b in PAYLOAD)  # same length, other content
        if mode == "ignore-range" or not rng or start == 0:
            status, headers, body = 200, {}, data
        elif start >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, 0)
            return
        else:
            status, body = 206, data[start:]
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        self._send(status, body, {"Accept-Ranges": "bytes", **headers}, len(body))
        if mode == "truncate":  # Content-Length promises more than is sent, then close
            self.wfile.write(body[:CUT])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "stall-body":
            self.wfile.write(body[:CUT])
            self.wfile.flush()
            srv.release.wait(STALL_S)
            self.close_connection = True
            return
        self.wfile.write(body)


class _FastToken(CancelToken):
    """A token whose back-off waits return at once (and are recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.cancelled


@pytest.fixture
def server(monkeypatch, tmp_path):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))  # this test's own models folder
    srv = _FaultServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/files/fault.pth"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _entry(url: str, sha: str = SHA) -> Entry:
    return Entry(
        id="fault-up",
        name="Fault upscaler",
        kind="upscaler",
        license="MIT",
        size=len(PAYLOAD),
        url=url,
        sha256=MappingProxyType({"fault.pth": sha}),
    )


def _paths() -> SimpleNamespace:
    dest = store.kind_dir("upscaler") / "fault.pth"
    return SimpleNamespace(dest=dest, part=dest.with_name("fault.pth.part"))


def _one_clear_error(exc: BaseException) -> str:
    """The error is a Studio error whose user message is one line without raw names."""
    assert isinstance(exc, StudioError), f"{type(exc).__name__}: {exc}"
    msg = exc.message
    assert msg == str(exc) and msg.strip() and len(msg) < 300, msg
    for raw in RAW_NAMES:
        assert raw not in msg, f"{raw!r} in {msg!r}"
    return msg


def _nothing_half_written(paths: SimpleNamespace) -> int:
    """Nothing at the final path; a kept .part is a prefix of the real file. Returns its size."""
    assert not paths.dest.exists(), "a half-written file at the final path"
    if not paths.part.exists():
        return 0
    kept = paths.part.read_bytes()
    assert len(kept) < len(PAYLOAD)
    assert kept == PAYLOAD[: len(kept)], "the .part is not a prefix of the file: resume breaks"
    return len(kept)


def _download(server, token: CancelToken | None = None) -> Path:
    return dl.download(_entry(server.url), token=token or _FastToken())


def _finish_later(server) -> None:
    """A later run against a well-behaved server completes the file from what was kept."""
    server.mode = "ok"
    paths = _paths()
    kept = paths.part.stat().st_size if paths.part.exists() else 0
    server.requests.clear()
    path = _download(server)
    assert path == paths.dest and path.read_bytes() == PAYLOAD
    assert not paths.part.exists()
    assert server.requests == [f"bytes={kept}-" if kept else None]


# -- (a) the server ignores Range ---------------------------------------------------------


def test_a_server_ignoring_range_restarts_from_zero(server):
    """A part from an earlier run exists; the server answers the Range request with 200 and
    the whole body. Appending would corrupt the file: it must start over and come out right
    (a foreign part that is not even a prefix of the file is no problem then)."""
    server.mode = "ignore-range"
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(b"not the file's first bytes" * 100)
    events: list[dl.DownloadProgress] = []
    path = dl.download(_entry(server.url), token=_FastToken(), progress=events.append)
    assert path.read_bytes() == PAYLOAD
    assert events[-1].done == events[-1].total == len(PAYLOAD)  # counted from zero again
    assert not paths.part.exists()
    assert server.requests == ["bytes=2600-"]
    assert store.find_installed(_entry(server.url)) == paths.dest


# -- (b) truncated body -------------------------------------------------------------------


def test_b_truncated_body_once_is_resumed(server):
    server.mode, server.faults_left = "truncate", 1
    token = _FastToken()
    path = _download(server, token)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={CUT}-"]
    assert len(token.waits) == 1


def test_b_body_always_truncated_ends_in_one_error_and_keeps_a_prefix(server):
    server.mode = "truncate"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "interrupted" in msg and "resume" in msg
    kept = _nothing_half_written(_paths())
    assert kept == 4 * CUT  # the first attempt and three retries each appended their part
    assert len(server.requests) == 4
    _finish_later(server)


def test_b_chunked_body_cut_inside_a_chunk(server):
    """The same cut in a chunked response: http.client raises IncompleteRead there, whose
    repr must not reach the message."""
    server.mode = "truncate-chunked"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "interrupted (connection lost: the connection closed early)" in msg
    _nothing_half_written(_paths())
    _finish_later(server)


def test_b_garbage_instead_of_http_is_one_error(server):
    server.mode = "garbage"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "the server sent an invalid response" in msg
    assert len(server.requests) == 4  # retried like a dropped connection, then given up
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()


# -- (c) wrong bytes ----------------------------------------------------------------------


def test_c_wrong_bytes_fail_the_checksum_and_leave_nothing(server):
    server.mode = "wrong-bytes"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Checksum mismatch for fault-up")
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()  # wrong bytes are not resumed
    assert store.find_installed(_entry(server.url)) is None
    _finish_later(server)


def test_c_wrong_bytes_after_a_good_prefix_are_not_kept(server):
    """A good part from an earlier run, then the server sends wrong bytes for the rest: the
    whole file is removed (which bytes are bad can't be told)."""
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "wrong-bytes"
    with pytest.raises(StudioError) as err:
        _download(server)
    assert _one_clear_error(err.value).startswith("Checksum mismatch")
    assert server.requests == [f"bytes={CUT}-"]
    assert not paths.dest.exists() and not paths.part.exists()


# -- (d) 416 ------------------------------------------------------------------------------


def test_d_416_on_a_fresh_download_is_one_error(server):
    server.mode = "416"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "416" in msg
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()


def test_d_416_for_a_stale_part_starts_over(server):
    """The part is shorter than the file but the server refuses its range (the file changed
    on the server, or a proxy): the part is useless for resume. It is dropped and the file
    fetched whole, instead of failing with the same 416 on every later run."""
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "416-on-range"
    events: list[dl.DownloadProgress] = []
    path = dl.download(_entry(server.url), token=_FastToken(), progress=events.append)
    assert path.read_bytes() == PAYLOAD and not paths.part.exists()
    assert events[-1].done == events[-1].total == len(PAYLOAD)  # counted from zero again
    assert server.requests == [f"bytes={CUT}-", None]


def test_d_416_for_a_stale_part_then_failure_leaves_no_stale_part(server):
    """Same, and the fresh request fails too: one error, and the stale part is gone."""
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(b"x" * CUT)
    server.mode = "416"
    with pytest.raises(StudioError) as err:
        _download(server)
    _one_clear_error(err.value)
    assert not paths.dest.exists() and not paths.part.exists()


def test_d_416_for_a_complete_part_is_verified(server):
    """A part already holding the whole file: the server's 416 means "nothing more", and the
    file is checked and stored (no second request)."""
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD)
    server.mode = "416"
    assert _download(server).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


# -- (e) 500 ------------------------------------------------------------------------------


def test_e_server_error_is_retried_then_one_error(server):
    server.mode = "500"
    token = _FastToken()
    with pytest.raises(StudioError) as err:
        _download(server, token)
    msg = _one_clear_error(err.value)
    assert msg == "Download of fault-up failed (server error 500); try again later"
    assert err.value.detail == "server error 500"
    assert len(server.requests) == 4  # the first try and 3 retries
    assert len(token.waits) == 3 and all(0 < w <= 5 for w in token.waits)  # bounded back-off
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()


def test_e_server_error_keeps_a_good_part(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "500"
    with pytest.raises(StudioError) as err:
        _download(server)
    _one_clear_error(err.value)
    assert _nothing_half_written(paths) == CUT
    _finish_later(server)


def test_e_nobody_listening_is_one_error(server):
    """Connection refused (the port is closed): retried, then one line naming the host."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(StudioError) as err:
        dl.download(_entry(f"http://127.0.0.1:{port}/files/fault.pth"), token=_FastToken())
    msg = _one_clear_error(err.value)
    assert (
        msg
        == f"Download of fault-up failed (127.0.0.1:{port}: Connection refused); try again later"
    )
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()


def test_e_transient_server_error_recovers(server):
    server.mode, server.faults_left = "500", 2
    assert _download(server).read_bytes() == PAYLOAD
    assert len(server.requests) == 3


# -- (f) a stalled server -----------------------------------------------------------------


@pytest.fixture
def short_timeout(monkeypatch):
    """download_url's read timeout (dl.TIMEOUT_S, 30 s) cut to CLIENT_TIMEOUT_S."""
    assert dl.TIMEOUT_S == 30.0
    monkeypatch.setattr(dl, "TIMEOUT_S", CLIENT_TIMEOUT_S)


@pytest.mark.parametrize("mode", ["stall-headers", "stall-body"])
def test_f_stall_longer_than_the_timeout(server, short_timeout, mode):
    server.mode = mode
    t0 = time.monotonic()
    with pytest.raises(StudioError) as err:
        _download(server)
    elapsed = time.monotonic() - t0
    msg = _one_clear_error(err.value)
    assert f"no answer for {CLIENT_TIMEOUT_S:g} s" in msg
    # 4 attempts of one timeout each (the back-off is skipped): bounded, not STALL_S each.
    assert elapsed < 4 * STALL_S / 2, elapsed
    assert len(server.requests) == 4
    kept = _nothing_half_written(_paths())
    assert kept == (0 if mode == "stall-headers" else 4 * CUT)
    # Resume is offered only when there is something to resume from.
    assert ("run it again to resume" in msg) == (kept > 0), msg
    server.release.set()
    _finish_later(server)


def test_f_stall_once_then_recovers(server, short_timeout):
    server.mode, server.faults_left = "stall-body", 1
    assert _download(server).read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={CUT}-"]


# -- (g) the file vanishes before it is stored --------------------------------------------


class _OsWith:
    """``os`` for download.py only, with one function replaced."""

    def __init__(self, **funcs) -> None:
        self.__dict__.update(funcs)

    def __getattr__(self, name):
        return getattr(os, name)


def test_g_part_removed_before_the_rename(server, monkeypatch):
    def replace(src, dst):
        os.unlink(src)  # someone (a cleaner, antivirus) removes the file first
        return os.replace(src, dst)

    monkeypatch.setattr(dl, "os", _OsWith(replace=replace))
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "fault-up" in msg and "fault.pth.part" in msg
    assert "removed by another program" in msg and msg.endswith("run the download again")
    paths = _paths()
    assert not paths.dest.exists() and not paths.part.exists()


def test_g_part_removed_before_the_fsync(server, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        _paths().part.unlink()  # gone between the checksum and storing it
        return real_fsync(fd)

    monkeypatch.setattr(dl, "os", _OsWith(fsync=fsync))
    with pytest.raises(StudioError) as err:
        _download(server)
    _one_clear_error(err.value)
    assert not _paths().dest.exists()


def test_g_part_removed_while_downloading(server):
    """The part is deleted after the first bytes arrived: the writer still holds it open, so
    the rest goes to a file nobody can see. One clear error, no traceback."""

    def on_progress(p: dl.DownloadProgress) -> None:
        part = _paths().part
        if p.stage == "download" and 0 < p.done < len(PAYLOAD) and part.exists():
            part.unlink()

    with pytest.raises(StudioError) as err:
        dl.download(_entry(server.url), token=_FastToken(), progress=on_progress)
    msg = _one_clear_error(err.value)
    assert "fault-up" in msg and "removed by another program" in msg
    assert not _paths().dest.exists()
    _finish_later(server)


# -- (h) the disk fills mid-download ------------------------------------------------------


def test_h_disk_full_after_n_bytes_keeps_a_consistent_part(server, monkeypatch):
    limit = CUT  # the "disk" takes this many bytes of the .part, then ENOSPC
    real_open = open

    class _FillingFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            room = limit - self._f.tell()
            if len(data) > room:
                self._f.write(data[: max(room, 0)])  # a short write, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        writing = str(path).endswith(".part") and "r" not in mode
        return _FillingFile(f) if writing else f

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Disk full") and msg.endswith("run the download again to resume")
    assert "No space left on device" in err.value.detail  # the system's words, for the log
    assert _nothing_half_written(_paths()) == limit
    assert len(server.requests) == 1  # a full disk is not retried
    monkeypatch.delattr(dl, "open")
    _finish_later(server)


def test_h_disk_full_error_class_is_the_catalog_one(server, monkeypatch):
    """Disk full on a download through download_url directly is the same ModelError."""
    real_open = open

    def fake_open(path, mode="r", *a, **k):
        if str(path).endswith(".part") and "r" not in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    dest = _paths().dest
    with pytest.raises(ModelError) as err:
        dl.download_url(server.url, dest, size=len(PAYLOAD), sha256=SHA, token=_FastToken())
    _one_clear_error(err.value)
    assert not dest.exists()


# -- (i) what is asked for, and answers that are not the file -----------------------------


def test_requests_name_the_downloader_and_resume_with_range(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    _download(server)
    assert server.requests == [f"bytes={CUT}-"]
    assert server.agents == [dl.USER_AGENT] and dl.USER_AGENT.startswith("Studio")


def test_download_url_creates_the_folder_and_names_the_file(server, tmp_path, monkeypatch):
    dest = tmp_path / "a" / "b" / "w.pth"
    assert dl.download_url(server.url, dest, token=_FastToken()).read_bytes() == PAYLOAD
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"^offline: cannot download w2\.pth"):
        dl.download_url(server.url, tmp_path / "w2.pth")  # no model id: the file name


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, ("Access denied (401)", "permission or a token")),
        (403, ("Access denied (403)", "permission or a token")),
        (404, ("Not found (404)",)),
        (410, ("Download failed: HTTP 410",)),
    ],
)
def test_client_errors_are_not_retried(server, status, words):
    server.mode, server.status = "status", status
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    for w in words:
        assert w in msg, msg
    assert server.url in msg
    assert len(server.requests) == 1


def test_too_many_requests_is_retried_with_growing_back_off(server):
    server.mode, server.status, server.faults_left = "status", 429, 3
    token = _FastToken()
    assert _download(server, token).read_bytes() == PAYLOAD
    assert len(server.requests) == 4
    assert token.waits == [1.0, 2.0, 4.0]  # 0.5 s doubled per retry


def test_back_off_is_capped_at_five_seconds(server, tmp_path):
    server.mode = "500"
    token = _FastToken()
    with pytest.raises(ModelError, match="server error 500"):
        dl.download_url(server.url, tmp_path / "w.pth", token=token, retries=5)
    assert token.waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(server.requests) == 6


def test_no_retries_means_one_request(server, tmp_path):
    server.mode = "500"
    token = _FastToken()
    with pytest.raises(ModelError):
        dl.download_url(server.url, tmp_path / "w.pth", token=token, retries=0)
    assert len(server.requests) == 1 and token.waits == []


def test_a_range_answer_for_other_bytes_is_refused(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "bad-range"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert "unexpected range" in msg and "bytes 0-" in msg
    assert _nothing_half_written(paths) == CUT  # the good part stays for a later run
    assert len(server.requests) == 1


def test_a_body_without_length_that_ends_early_is_resumed(server):
    """No Content-Length: only the catalog size tells that the body ended early."""
    server.mode, server.faults_left = "no-length-close", 1
    token = _FastToken()
    assert _download(server, token).read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={CUT}-"]


def test_a_body_without_length_always_cut_names_the_bytes(server):
    server.mode = "no-length-close"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    # This server answers a Range with the file from its start: each try starts over.
    assert f"connection closed after {CUT} of {len(PAYLOAD)} bytes" in msg
    assert _nothing_half_written(_paths()) == CUT
    assert "run it again to resume" in msg


def test_unknown_size_takes_the_servers_length(server, tmp_path):
    events: list[dl.DownloadProgress] = []
    dest = dl.download_url(server.url, tmp_path / "w.pth", progress=events.append)
    assert dest.read_bytes() == PAYLOAD
    assert [e.total for e in events] == [len(PAYLOAD)] * len(events)
    server.mode, server.faults_left = "truncate", 1  # and notices a short body by it
    server.requests.clear()
    dl.download_url(server.url, tmp_path / "w2.pth", token=_FastToken())
    assert server.requests == [None, f"bytes={CUT}-"]


def test_unknown_size_complete_part_is_stored(server, tmp_path):
    """Without a catalog size a 416 for the whole part means it is complete."""
    part = tmp_path / "w.pth.part"
    part.write_bytes(PAYLOAD)
    dest = dl.download_url(server.url, tmp_path / "w.pth", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_a_part_longer_than_the_file_starts_over(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD + b"trailing bytes of something else")
    assert _download(server).read_bytes() == PAYLOAD
    assert server.requests == [None]


def test_disk_space_counts_only_the_missing_bytes(server, monkeypatch):
    import shutil

    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    missing = len(PAYLOAD) - CUT
    usage = shutil.disk_usage(paths.part.parent)
    free = {"n": missing + dl.DISK_MARGIN - 1}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=free["n"]))
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Not enough disk space") and server.requests == []
    free["n"] = missing + dl.DISK_MARGIN  # just enough for the rest
    assert _download(server).read_bytes() == PAYLOAD


def test_checksum_is_compared_case_insensitively(server, tmp_path):
    dest = dl.download_url(server.url, tmp_path / "w.pth", sha256=SHA.upper())
    assert dest.read_bytes() == PAYLOAD


def test_checksum_message_shows_both_hashes(server):
    server.mode = "wrong-bytes"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    got = hashlib.sha256(bytes(b ^ 0x5A for b in PAYLOAD)).hexdigest()
    assert f"expected sha256 {SHA[:12]}..., got {got[:12]}..." in msg
    assert "removed" in msg and "try again" in msg


def test_headers_then_silence_leaves_nothing_to_resume(server, tmp_path):
    """The server answers, then sends no byte: the empty part is no reason to offer resume."""
    server.mode = "stall-before-body"
    with pytest.raises(StudioError) as err:
        dl.download_url(server.url, tmp_path / "w.pth", token=_FastToken(), retries=0, timeout=0.2)
    msg = _one_clear_error(err.value)
    assert "no answer for 0.2 s" in msg
    assert "try again later" in msg and "resume" not in msg


def test_storing_fails_is_one_error(server, monkeypatch):
    def replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dl, "os", _OsWith(replace=replace))
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Could not store") and "fault.pth" in msg
    assert msg.endswith(": Permission denied")


def test_a_write_error_other_than_disk_full(server, monkeypatch):
    real_open = open

    def fake_open(path, mode="r", *a, **k):
        if str(path).endswith(".part") and "r" not in mode:
            raise PermissionError(13, "Permission denied")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Could not write") and msg.endswith(": Permission denied")
    assert "Permission denied" in err.value.detail
    assert "Disk full" not in msg


def test_cancelled_before_start_touches_nothing(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    token = _FastToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        _download(server, token)
    assert server.requests == [] and _nothing_half_written(paths) == CUT


# -- (j) network failures in a few words --------------------------------------------------


def test_network_failures_in_a_few_words():
    import http.client
    import urllib.error

    cases = [
        (urllib.error.URLError("unknown url type: ftp"), "unknown url type: ftp"),
        (urllib.error.URLError(TimeoutError("timed out")), "no answer for 1.5 s"),
        (TimeoutError(), "no answer for 1.5 s"),
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            "Connection refused",
        ),
        (ConnectionResetError(), "the connection closed early"),
        (http.client.IncompleteRead(b"abc", 10), "the connection closed early"),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
        (http.client.BadStatusLine("SSH-2.0"), "the server sent an invalid response"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "No route to host"),
        (urllib.error.URLError(""), "the connection failed"),
        (OSError(), "the connection failed"),
        (ValueError("odd"), "the connection failed"),
    ]
    for exc, words in cases:
        assert dl._net_reason(exc, 1.5) == words, repr(exc)


def test_a_range_answer_that_names_no_range_is_refused(server):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "range-unnamed"
    with pytest.raises(StudioError) as err:
        _download(server)
    assert "unexpected range ()" in _one_clear_error(err.value)  # nothing named
    assert _nothing_half_written(paths) == CUT


def test_a_whole_file_answer_other_than_200_is_not_appended(server):
    """Only a 206 is the rest of the file: a proxy's 203 to a Range request is all of it."""
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    server.mode = "203-whole"
    assert _download(server).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={CUT}-"]


def test_a_stale_part_that_cannot_be_removed_is_one_error(server, monkeypatch):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith(".part"):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    server.mode = "416-on-range"
    with pytest.raises(StudioError) as err:
        _download(server)
    msg = _one_clear_error(err.value)
    assert msg.startswith("Could not remove") and "fault.pth.part" in msg
    assert msg.endswith(": Permission denied")


def test_a_stale_part_removed_meanwhile_by_someone_else_is_no_error(server, monkeypatch):
    paths = _paths()
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    paths.part.write_bytes(PAYLOAD[:CUT])
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith(".part") and self.exists():
            os.remove(self)  # a cleaner got there first
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    server.mode = "416-on-range"
    assert _download(server).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={CUT}-", None]


def test_no_eta_when_no_size_is_known(server, tmp_path, monkeypatch):
    """Neither the catalog nor the server gives a size: progress shows bytes and speed, but
    no ETA (there is nothing to count down to)."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(dl, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    server.mode, server.faults_left = "no-length-close", 1
    events: list[dl.DownloadProgress] = []
    dl.download_url(server.url, tmp_path / "w.pth", token=_FastToken(), progress=events.append)
    assert any(e.speed > 0 for e in events)
    assert [e.eta for e in events] == [None] * len(events)
    assert not any("ETA" in e.line() for e in events)


def test_a_single_kept_byte_is_offered_for_resume(server, tmp_path):
    server.mode = "one-byte-then-stall"
    with pytest.raises(StudioError) as err:
        dl.download_url(server.url, tmp_path / "w.pth", token=_FastToken(), retries=0, timeout=0.2)
    assert "run it again to resume" in _one_clear_error(err.value)
    assert (tmp_path / "w.pth.part").read_bytes() == PAYLOAD[:1]


def test_checksum_mismatch_is_reported_even_if_the_part_cannot_be_removed(server, monkeypatch):
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith(".part"):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    server.mode = "wrong-bytes"
    with pytest.raises(StudioError) as err:
        _download(server)
    assert _one_clear_error(err.value).startswith("Checksum mismatch for fault-up")
