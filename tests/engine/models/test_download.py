"""Downloads against a local HTTP server on 127.0.0.1 (never the internet): resume after a
dropped connection, checksum mismatch, cancel, disk full, offline mode, and the Hugging Face
path (snapshot_download replaced by a fake that drives the tqdm adapter)."""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from studio.core.cancel import CancelToken
from studio.core.catalog import Entry
from studio.core.errors import JobCancelled, ModelError
from studio.engine.models import download as dl
from studio.engine.models import store

PAYLOAD = os.urandom(3 * dl.CHUNK + 12345)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = PAYLOAD
        self.drop_after: int | None = None  # close the connection after this many body bytes
        self.drops_left = 0
        self.status: int | None = None  # force an error status
        self.requests: list[str | None] = []  # Range headers seen


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append(rng)
        if srv.status:
            self.send_error(srv.status)
            return
        data = srv.payload
        start = 0
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if srv.drop_after is not None and srv.drops_left > 0:
            srv.drops_left -= 1
            self.wfile.write(body[: srv.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _NoWaitToken(CancelToken):
    """A token whose back-off waits between retries return at once (and are recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.cancelled


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/models/tiny.pth"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_download_verifies_and_reports_progress(server, tmp_path):
    events: list[dl.DownloadProgress] = []
    dest = dl.download_url(
        server.url, tmp_path / "tiny.pth", size=len(PAYLOAD), sha256=SHA, progress=events.append
    )
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "tiny.pth.part").exists()
    assert events[-1].stage == "done"
    assert events[-1].done == events[-1].total == len(PAYLOAD)
    dones = [e.done for e in events]
    assert dones == sorted(dones) and dones[0] > 0
    assert "MB" in events[-1].line()
    # The last byte count is reported before the "done" event, whatever the throttling.
    assert [e.done for e in events if e.stage == "download"][-1] == len(PAYLOAD)
    assert {e.model_id for e in events} == {"tiny.pth"}  # no model id given: the file name


def test_resume_after_dropped_connection(server, tmp_path):
    server.drop_after = dl.CHUNK + 1000
    server.drops_left = 1
    token = _NoWaitToken()
    dest = dl.download_url(
        server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA, token=token
    )
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    # The second request resumed where the first stopped instead of starting over.
    assert server.requests[0] is None
    assert server.requests[1] == f"bytes={dl.CHUNK + 1000}-"
    assert token.waits == [1.0]  # one back-off before the retry: the first is 1 s


def test_resume_from_part_left_by_an_earlier_run(server, tmp_path):
    part = tmp_path / "m.pth.part"
    part.write_bytes(PAYLOAD[:777])
    dest = dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=777-"]


def test_repeated_drops_give_up_and_keep_part_for_resume(server, tmp_path):
    server.drop_after = 5000
    server.drops_left = 100
    with pytest.raises(ModelError, match="interrupted.*resume"):
        dl.download_url(
            server.url,
            tmp_path / "m.pth",
            size=len(PAYLOAD),
            sha256=SHA,
            retries=1,
            token=_NoWaitToken(),
        )
    part = tmp_path / "m.pth.part"
    assert part.stat().st_size == 2 * 5000  # two attempts, the second appended
    assert not (tmp_path / "m.pth").exists()
    server.drops_left = 0
    dest = dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ModelError, match="Checksum mismatch.*removed"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=wrong)
    assert list(tmp_path.iterdir()) == []


def test_cancel_keeps_part_and_raises(server, tmp_path):
    token = CancelToken()

    def on_progress(p: dl.DownloadProgress) -> None:
        if p.done > 0:  # the first report: cancel mid-way
            token.cancel()

    with pytest.raises(JobCancelled):
        dl.download_url(
            server.url,
            tmp_path / "m.pth",
            size=len(PAYLOAD),
            sha256=SHA,
            token=token,
            progress=on_progress,
        )
    assert not (tmp_path / "m.pth").exists()
    assert (tmp_path / "m.pth.part").stat().st_size < len(PAYLOAD)
    # Resume completes it.
    dest = dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_not_enough_disk_space_is_checked_first(server, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=len(PAYLOAD) // 2))
    with pytest.raises(ModelError, match="Not enough disk space"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert server.requests == []  # refused before any request
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_write(server, tmp_path, monkeypatch):
    real_open = open
    calls = {"n": 0}

    class _FullFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return (
            _FullFile(f) if str(path).endswith(".part") and "b" in mode and "r" not in mode else f
        )

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    with pytest.raises(ModelError, match="Disk full"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert not (tmp_path / "m.pth").exists()
    kept = (tmp_path / "m.pth.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    monkeypatch.undo()
    server_resume = server  # the next attempt resumes from the bytes that were written
    server_resume.requests.clear()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dest = dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={kept}-"]


def test_http_errors_are_clear(server, tmp_path):
    server.status = 403
    with pytest.raises(ModelError, match="Access denied"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD))
    server.status = 404
    with pytest.raises(ModelError, match="Not found"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD))


def test_size_mismatch_with_catalog_is_refused(server, tmp_path):
    with pytest.raises(ModelError, match="catalog says"):
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD) + 1)


def _url_entry(url: str, sha: str = SHA) -> Entry:
    from types import MappingProxyType

    return Entry(
        id="tiny-up",
        name="Tiny upscaler",
        kind="upscaler",
        license="MIT",
        size=len(PAYLOAD),
        url=url,
        sha256=MappingProxyType({"tiny.pth": sha}),
    )


def test_download_entry_into_models_folder_then_installed(server):
    entry = _url_entry(server.url)
    assert store.find_installed(entry) is None
    path = dl.download(entry)
    assert path == store.kind_dir("upscaler") / "tiny.pth"
    assert store.find_installed(entry) == path
    assert [r.ok for r in dl.verify(entry)] == [True]
    # Already installed: no second request.
    n = len(server.requests)
    assert dl.download(entry) == path and len(server.requests) == n
    # A corrupted file is caught by verify.
    path.write_bytes(b"x" + PAYLOAD[1:])
    assert [r.ok for r in dl.verify(entry)] == [False]
    assert store.remove(entry) == len(PAYLOAD)
    assert store.find_installed(entry) is None


@pytest.mark.parametrize("var", ["STUDIO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_touches_the_network(server, tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(ModelError, match="^offline: cannot download tiny-up"):
        dl.download(_url_entry(server.url))
    with pytest.raises(ModelError, match="^offline"):
        dl.download_url(server.url, tmp_path / "m.pth")
    repo_entry = Entry(id="r", name="R", kind="preview-decoder", license="MIT", size=10, repo="a/b")

    def boom(*a, **k):
        raise AssertionError("snapshot_download must not be called offline")

    monkeypatch.setattr("huggingface_hub.snapshot_download", boom)
    with pytest.raises(ModelError, match="^offline"):
        dl.download(repo_entry)
    assert server.requests == []


# ------------------------------------------------------------------------------------------
# Hugging Face repos: snapshot_download is replaced by a fake that writes an HF-cache layout
# and drives the tqdm_class the way huggingface_hub does.


def _fake_snapshot(files: dict[str, bytes], fail: Exception | None = None):
    import huggingface_hub

    real = huggingface_hub.snapshot_download

    def fake(repo_id, *, revision=None, cache_dir=None, allow_patterns=None, tqdm_class=None, **kw):
        if kw.get("local_files_only"):  # store.find_installed's cache lookup
            return real(repo_id, revision=revision, cache_dir=cache_dir, **kw)
        if fail is not None:
            raise fail
        root = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        snap = root / "snapshots" / "c0ffee"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text("c0ffee")
        (root / "blobs").mkdir(exist_ok=True)
        bar = tqdm_class(name="huggingface_hub.snapshot_download", total=0, initial=0, unit="B")
        other = tqdm_class(total=len(files), desc="Fetching files")
        bar.total = sum(len(b) for b in files.values())
        for name, data in files.items():
            blob = root / "blobs" / hashlib.sha256(data).hexdigest()
            for i in range(0, len(data), 1000):
                blob.parent.mkdir(exist_ok=True)
                with open(blob, "ab") as f:
                    f.write(data[i : i + 1000])
                bar.update(len(data[i : i + 1000]))
            target = snap / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.path.relpath(blob, target.parent))
            other.update(1)
        return str(snap)

    return fake


def _repo_entry(**kw) -> Entry:
    from types import MappingProxyType

    base = dict(
        id="tiny-taesd",
        name="Tiny TAESD",
        kind="preview-decoder",
        license="MIT",
        size=5000,
        repo="someone/tiny-taesd",
        allow_patterns=("config.json", "diffusion_pytorch_model.safetensors"),
    )
    base.update(kw)
    if "sha256" in base:
        base["sha256"] = MappingProxyType(base["sha256"])
    return Entry(**base)


@pytest.fixture
def online_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_repo_download_progress_and_installed(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": os.urandom(4000)}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    events: list[dl.DownloadProgress] = []
    entry = _repo_entry()
    path = dl.download(entry, progress=events.append)
    assert path.is_dir() and (path / "config.json").is_file()
    assert events[-1].stage == "done" and events[-1].done == 4002
    assert store.find_installed(entry) == path


def test_repo_download_cancel(online_hf, monkeypatch):
    files = {"diffusion_pytorch_model.safetensors": os.urandom(8000), "config.json": b"{}"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    token = CancelToken()

    def on_progress(p):
        if p.done >= 1000:
            token.cancel()

    with pytest.raises(JobCancelled):
        dl.download(_repo_entry(), token=token, progress=on_progress)
    assert store.find_installed(_repo_entry()) is None


def test_repo_sha256_mismatch_removes_file(online_hf, monkeypatch):
    data = os.urandom(3000)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot({"weights.pth": data}))
    entry = _repo_entry(
        kind="pose-detector",
        files=("weights.pth",),
        allow_patterns=(),
        sha256={"weights.pth": "a" * 64},
    )
    with pytest.raises(ModelError, match="Checksum mismatch.*removed"):
        dl.download(entry)
    assert store.find_installed(entry) is None
    good = _repo_entry(
        kind="pose-detector",
        files=("weights.pth",),
        allow_patterns=(),
        sha256={"weights.pth": hashlib.sha256(data).hexdigest()},
    )
    path = dl.download(good)
    assert path.is_file() and path.name == "weights.pth"
    assert [r.ok for r in dl.verify(good)] == [True]


def test_gated_repo_message(online_hf, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    class _Response:
        status_code = 403

    plain_403 = RuntimeError("403 Forbidden")
    plain_403.response = _Response()
    gated = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(gated, "Access to model someone/tiny-taesd is restricted")
    for err in (gated, plain_403):
        monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot({}, fail=err))
        with pytest.raises(ModelError, match="gated.*huggingface-cli login.*HF_TOKEN"):
            dl.download(_repo_entry())


def test_repo_disk_space_checked_first(online_hf, monkeypatch):
    called = []
    real = _fake_snapshot({})

    def spy(*a, **k):
        if not k.get("local_files_only"):
            called.append(1)
        return real(*a, **k)

    monkeypatch.setattr("huggingface_hub.snapshot_download", spy)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10)
    )
    with pytest.raises(ModelError, match="Not enough disk space"):
        dl.download(_repo_entry())
    assert called == []


# ------------------------------------------------------------------------------------------
# The real huggingface_hub.snapshot_download against a minimal fake Hub on 127.0.0.1 (the
# endpoints it calls: repo info, tree listing, HEAD/GET resolve with Range).

HUB_COMMIT = "c" * 40
HUB_FILES = {
    "config.json": b'{"tiny": true}',
    "diffusion_pytorch_model.safetensors": os.urandom(600_000),
}


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._resolve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        repo = "someone/tiny-taesd"
        if self.server.status:
            self.send_response(self.server.status)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to model someone/tiny-taesd is restricted")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith(f"/api/models/{repo}/revision/"):
            return self._json({"id": repo, "sha": HUB_COMMIT, "siblings": []})
        if path.startswith(f"/api/models/{repo}/tree/"):
            return self._json(
                [
                    {
                        "type": "file",
                        "path": name,
                        "size": len(data),
                        "oid": hashlib.sha1(data).hexdigest(),
                        "lfs": {
                            "oid": hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                            "pointerSize": 134,
                        },
                    }
                    for name, data in HUB_FILES.items()
                ]
            )
        self._resolve(body=True)

    def _json(self, obj) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _resolve(self, body: bool) -> None:
        name = self.path.split("?")[0].rsplit("/resolve/", 1)[-1].partition("/")[2]
        data = HUB_FILES.get(name)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        sha = hashlib.sha256(data).hexdigest()
        start = 0
        rng = self.headers.get("Range")
        if body:
            self.server.requests.append((name, rng))
        if rng and body:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("X-Repo-Commit", HUB_COMMIT)
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        try:
            for i in range(start, len(data), 16 * 1024):
                self.wfile.write(data[i : i + 16 * 1024])
                if self.server.delay:
                    time.sleep(self.server.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def fake_hub(online_hf, monkeypatch):
    import huggingface_hub.constants as hf_constants

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = _Server()
    srv.RequestHandlerClass = _HubHandler
    srv.delay = 0.0
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    # huggingface_hub read HF_HUB_OFFLINE at import (the test session is offline); the
    # downloader passes HF_ENDPOINT to it explicitly.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
    yield srv
    srv.shutdown()
    srv.server_close()


def test_real_snapshot_download_progress_and_install(fake_hub):
    entry = _repo_entry(size=600_014)
    events: list[dl.DownloadProgress] = []
    path = dl.download(entry, progress=events.append)
    assert (path / "diffusion_pytorch_model.safetensors").read_bytes() == HUB_FILES[
        "diffusion_pytorch_model.safetensors"
    ]
    assert store.find_installed(entry) == path
    assert events[-1].stage == "done" and events[-1].done == 600_014
    assert any(0 < e.done < 600_014 for e in events)  # byte progress arrived through tqdm_class


def test_real_snapshot_download_cancel_then_rerun(fake_hub):
    """Cancel stops the download at the next chunk; the rerun completes it. (huggingface_hub
    2.x keeps finished files and restarts unfinished ones: it downloads to a per-process temp
    file, and retries dropped connections with Range inside one run.)"""
    fake_hub.delay = 0.01
    entry = _repo_entry(size=600_014)
    token = CancelToken()

    def on_progress(p):
        if p.done > 100_000:
            token.cancel()

    with pytest.raises(JobCancelled):
        dl.download(entry, token=token, progress=on_progress)
    assert store.find_installed(entry) is None
    first_run = list(fake_hub.requests)
    fake_hub.delay = 0.0
    fake_hub.requests.clear()
    path = dl.download(entry)
    assert (path / "diffusion_pytorch_model.safetensors").stat().st_size == 600_000
    assert ("config.json", None) in first_run
    assert [name for name, _ in fake_hub.requests] == ["diffusion_pytorch_model.safetensors"]


def test_real_snapshot_download_gated(fake_hub):
    fake_hub.status = 401
    with pytest.raises(ModelError, match="gated or private.*huggingface-cli login"):
        dl.download(_repo_entry())


# ------------------------------------------------------------------------------------------
# What snapshot_download is asked for, and how its failures read.


def _recording_snapshot(files: dict[str, bytes], calls: list[dict], fail: Exception | None = None):
    fake = _fake_snapshot(files, fail)

    def record(repo_id, **kw):
        if kw.get("local_files_only"):
            return fake(repo_id, **kw)
        calls.append(dict(kw, repo_id=repo_id))
        snap = fake(repo_id, **kw)
        if kw.get("revision"):  # the fake fetched "main"; name the asked revision too
            (Path(snap).parents[1] / "refs" / kw["revision"]).write_text("c0ffee")
        return snap

    return record


@pytest.mark.parametrize(
    ("kw", "patterns"),
    [
        (dict(files=("weights.pth",), allow_patterns=("*.json",)), ["weights.pth"]),
        (dict(allow_patterns=("*.json", "*.safetensors")), ["*.json", "*.safetensors"]),
        (dict(allow_patterns=()), None),  # the whole repo
    ],
)
def test_repo_download_asks_for_the_entry_files(online_hf, monkeypatch, tmp_path, kw, patterns):
    calls: list[dict] = []
    files = {"weights.pth": b"w", "config.json": b"{}", "m.safetensors": b"s"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _recording_snapshot(files, calls))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    dl.download(_repo_entry(revision="v1.0", kind="pose-detector", **kw))
    (call,) = calls
    assert call["repo_id"] == "someone/tiny-taesd" and call["revision"] == "v1.0"
    assert call["cache_dir"] == str(tmp_path / "hub")
    assert call["allow_patterns"] == patterns
    assert call["endpoint"] is None  # huggingface_hub's own default


def test_repo_download_uses_hf_endpoint_read_at_call_time(online_hf, monkeypatch):
    calls: list[dict] = []
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"w"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _recording_snapshot(files, calls))
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example")
    dl.download(_repo_entry())
    monkeypatch.setenv("HF_ENDPOINT", "")  # set but empty: the default hub, not ""
    store.remove(_repo_entry())
    dl.download(_repo_entry())
    assert [c["endpoint"] for c in calls] == ["http://mirror.example", None]


def test_repo_progress_takes_the_hub_total_when_larger(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": os.urandom(4000)}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    events: list[dl.DownloadProgress] = []
    dl.download(_repo_entry(size=100), progress=events.append)  # the catalog undersells it
    assert events[0].total == 4002  # the hub's sum of file sizes, from the first report on
    assert events[-1].stage == "done" and events[-1].done == events[-1].total == 4002


def test_repo_progress_keeps_the_catalog_total_when_larger(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": os.urandom(4000)}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    events: list[dl.DownloadProgress] = []
    dl.download(_repo_entry(size=5000), progress=events.append)
    assert [e.total for e in events] == [5000] * len(events)
    download_events = [e for e in events if e.stage == "download"]
    assert download_events[-1].done == 4002  # the final byte count is always reported


def test_tqdm_adapter_counts_only_the_aggregated_bytes_bar():
    events: list[dl.DownloadProgress] = []
    meter = dl._Meter("m", 100, events.append)
    token = CancelToken()
    cls = dl._progress_tqdm(meter, token)
    files_bar = cls(total=3, desc="Fetching 3 files")
    transfer = cls(name="huggingface_hub.snapshot_download.transfer", total=0, initial=0)
    bytes_bar = cls(name="huggingface_hub.snapshot_download", total=0, initial=0, unit="B")
    files_bar.update(1)
    transfer.update(500)
    assert meter.done == 0
    bytes_bar.total = 250
    bytes_bar.update(200)
    bytes_bar.update()  # tqdm's default step
    assert (meter.done, meter.total) == (201, 250)
    assert (bytes_bar.n, files_bar.n, transfer.n) == (201, 1, 500)  # still a working tqdm
    token.cancel()
    with pytest.raises(JobCancelled):
        files_bar.update(1)  # any bar stops the download once cancelled
    assert meter.done == 201


def test_repo_failure_after_cancel_is_a_cancel(online_hf, monkeypatch):
    """A download thread that fails because of the cancel (a closed stream) is reported as
    the cancel, not as a download error."""
    token = CancelToken()

    def fake(repo_id, **kw):
        token.cancel()
        raise RuntimeError("stream closed")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    with pytest.raises(JobCancelled):
        dl.download(_repo_entry(), token=token)


def test_repo_download_missing_the_needed_files_is_one_error(online_hf, monkeypatch):
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot({"README.md": b"x"}))
    with pytest.raises(ModelError) as err:
        dl.download(_repo_entry(allow_patterns=("*.safetensors",)))
    msg = str(err.value)
    assert msg.startswith("tiny-taesd: the download finished but the files")
    assert "someone/tiny-taesd" in msg and "*.safetensors" in msg


def test_repo_checksum_of_a_file_the_hub_did_not_send(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"w"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    entry = _repo_entry(sha256={"config.json": hashlib.sha256(b"{}").hexdigest()})
    events: list[dl.DownloadProgress] = []
    assert dl.download(entry, progress=events.append).is_dir()
    verifying = [e for e in events if e.stage == "verify"]
    assert [e.done for e in verifying] == [2]  # the bytes hashed
    missing = _repo_entry(id="other", repo="someone/other", sha256={"weights.bin": "b" * 64})
    with pytest.raises(ModelError, match=r"^Checksum mismatch for other \(weights.bin\)"):
        dl.download(missing)


def _hub_exc(cls, message: str, status: int = 404):
    """A huggingface_hub HTTP error the way it raises them (with the server's response)."""
    import httpx2

    response = httpx2.Response(status, request=httpx2.Request("GET", "https://hf.co/x"))
    return cls(message, response=response)


def test_hub_errors_read_as_one_clear_line():
    from huggingface_hub import errors as hf

    entry = _repo_entry()
    cases = {
        "repo": _hub_exc(hf.RepositoryNotFoundError, "404 Client Error\nRepository Not Found"),
        "revision": _hub_exc(hf.RevisionNotFoundError, "Revision v9 not found\nmore"),
        "entry": hf.RemoteEntryNotFoundError(
            "model.safetensors does not exist", response=_hub_exc(hf.HfHubHTTPError, "").response
        ),
        "offline": hf.OfflineModeIsEnabled("offline mode is on"),
        "unreachable": hf.LocalEntryNotFoundError(
            "An error happened while trying to locate the files on the Hub\nConnectError"
        ),
        "disk": OSError(errno.ENOSPC, "No space left on device"),
        "other": RuntimeError("boom\nsecond line"),
        "blank": RuntimeError("  \n "),
        "auth": _hub_exc(hf.HfHubHTTPError, "401 Unauthorized", status=401),
    }
    msgs = {k: dl.hub_error(entry, e) for k, e in cases.items()}
    for k, err in msgs.items():
        assert isinstance(err, ModelError) and "\n" not in err.message, k
    m = {k: e.message for k, e in msgs.items()}
    assert m["repo"].startswith("someone/tiny-taesd was not found on the Hugging Face Hub")
    assert "log in with `huggingface-cli login` or set HF_TOKEN" in m["repo"]
    assert (
        m["revision"].startswith("someone/tiny-taesd:") and "Revision v9 not found" in m["revision"]
    )
    assert "more" not in m["revision"] and "more" in msgs["revision"].detail
    # which of the two was not there
    assert "RevisionNotFoundError" in m["revision"] and "EntryNotFoundError" in m["entry"]
    assert m["entry"].startswith("someone/tiny-taesd:") and "model.safetensors" in m["entry"]
    for k in ("offline", "unreachable"):  # no network or offline: the same advice
        assert m[k].startswith("offline: cannot download tiny-taesd (someone/tiny-taesd)"), k
        assert "check the network or switch offline mode off" in m[k], k
    assert m["disk"].startswith("Disk full while downloading tiny-taesd")
    assert "free some space" in m["disk"]
    assert m["other"] == "Download of tiny-taesd failed: boom"
    assert m["blank"] == "Download of tiny-taesd failed: RuntimeError"
    assert m["auth"].startswith("someone/tiny-taesd is gated or private")
    assert "huggingface.co/someone/tiny-taesd" in m["auth"]
    # The library's full text goes to the details.
    assert "ConnectError" in msgs["unreachable"].detail
    assert "Repository Not Found" in msgs["repo"].detail
    assert "second line" in msgs["other"].detail
    assert "401 Unauthorized" in msgs["auth"].detail


def test_hub_disk_error_other_than_full_is_not_called_disk_full():
    err = dl.hub_error(_repo_entry(), OSError(errno.EACCES, "Permission denied"))
    assert (
        err.message.startswith("Download of tiny-taesd failed") and "Disk full" not in err.message
    )


# ------------------------------------------------------------------------------------------
# verify


@pytest.fixture
def own_home(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_MODEL_PATHS", raising=False)


def _install_url_file(entry: Entry, data: bytes) -> Path:
    path = store.kind_dir(entry.kind) / entry.target_filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_verify_reports_per_file(own_home):
    from types import MappingProxyType

    url = "http://127.0.0.1:9/models/tiny.pth"
    entry = _url_entry(url)
    assert dl.verify(entry) == [dl.VerifyResult("tiny-up", "", None, "not installed")]
    path = _install_url_file(entry, PAYLOAD)
    assert dl.verify(entry) == [dl.VerifyResult("tiny-up", str(path), True, "ok")]
    bad = b"x" + PAYLOAD[1:]
    path.write_bytes(bad)
    (result,) = dl.verify(entry)
    assert (result.ok, result.file) == (False, str(path))
    assert result.message == f"MISMATCH (sha256 {hashlib.sha256(bad).hexdigest()[:16]}...)"
    unpublished = _url_entry(url, sha="")
    unpublished = Entry(**{**unpublished.__dict__, "sha256": MappingProxyType({})})
    assert dl.verify(unpublished) == [
        dl.VerifyResult("tiny-up", str(path), None, "installed; no published sha256")
    ]


def test_verify_checks_files_beside_a_url_file(own_home):
    """A URL entry whose catalog hashes name a companion file next to it (a config)."""
    from types import MappingProxyType

    sidecar = b"model: tiny\n"
    entry = _url_entry("http://127.0.0.1:9/models/tiny.pth")
    entry = Entry(
        **{
            **entry.__dict__,
            "sha256": MappingProxyType(
                {"tiny.yaml": hashlib.sha256(sidecar).hexdigest(), "tiny.pth": SHA}
            ),
        }
    )
    path = _install_url_file(entry, PAYLOAD)
    assert dl.verify(entry) == [  # a missing file does not stop the others' check
        dl.VerifyResult("tiny-up", str(path.parent / "tiny.yaml"), False, "missing"),
        dl.VerifyResult("tiny-up", str(path), True, "ok"),
    ]
    (path.parent / "tiny.yaml").write_bytes(sidecar)
    events: list[dl.DownloadProgress] = []
    assert [r.ok for r in dl.verify(entry, progress=events.append)] == [True, True]
    assert events and {(e.stage, e.model_id) for e in events} == {("verify", "tiny-up")}
    assert 0 < events[-1].done <= len(PAYLOAD) + len(sidecar)


def test_verify_snapshot_folder_files(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"weights"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    entry = _repo_entry(
        sha256={
            "config.json": hashlib.sha256(b"{}").hexdigest(),
            "extra/notes.txt": "c" * 64,
        }
    )
    folder = dl.download(_repo_entry())
    results = dl.verify(entry)
    assert [(r.file, r.ok, r.message) for r in results] == [
        (str(folder / "config.json"), True, "ok"),
        (str(folder / "extra" / "notes.txt"), False, "missing"),
    ]


def test_verify_stops_on_cancel(own_home):
    entry = _url_entry("http://127.0.0.1:9/models/tiny.pth")
    _install_url_file(entry, PAYLOAD)
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        dl.verify(entry, token)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_repo_download_draws_no_progress_bars_of_its_own(online_hf, monkeypatch):
    """Studio shows one status line (CLI) or its panel (GUI): huggingface_hub's tqdm bars stay
    hidden even on a terminal where the user has not switched them off."""
    import importlib

    # the module, not the class of the same name that huggingface_hub.utils exports
    hf_tqdm_module = importlib.import_module("huggingface_hub.utils.tqdm")
    monkeypatch.setattr(hf_tqdm_module, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": os.urandom(4000)}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    events: list[dl.DownloadProgress] = []
    dl.download(_repo_entry(), progress=events.append)
    assert events[-1].done == 4002
    assert terminal.getvalue() == ""


def test_repo_events_name_the_model(online_hf, monkeypatch):
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"w"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    events: list[dl.DownloadProgress] = []
    entry = _repo_entry(sha256={"config.json": hashlib.sha256(b"{}").hexdigest()})
    dl.download(entry, progress=events.append)
    assert {e.stage for e in events} == {"download", "verify", "done"}
    assert {e.model_id for e in events} == {"tiny-taesd"}


def test_repo_download_called_directly_offline_names_the_model(online_hf, monkeypatch):
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"^offline: cannot download tiny-taesd"):
        dl.download_repo(_repo_entry())


def test_cancel_while_verifying_a_repo_file(online_hf, monkeypatch):
    """The sha256 check of a large file stops at the next block once cancelled."""
    big = os.urandom(2 * dl.CHUNK + 10)
    files = {"weights.pth": big}
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot(files))
    token = CancelToken()
    verified: list[int] = []

    def on_progress(p: dl.DownloadProgress) -> None:
        if p.stage == "verify":
            verified.append(p.done)
            token.cancel()

    entry = _repo_entry(
        kind="pose-detector",
        files=("weights.pth",),
        allow_patterns=(),
        sha256={"weights.pth": hashlib.sha256(big).hexdigest()},
    )
    with pytest.raises(JobCancelled):
        dl.download(entry, token=token, progress=on_progress)
    assert verified and verified[-1] < len(big)


def test_repo_checksum_mismatch_is_reported_even_if_removal_fails(online_hf, monkeypatch):
    data = os.urandom(300)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _fake_snapshot({"weights.pth": data}))

    def cannot_remove(path):
        raise ModelError(f"Could not remove {path}: Read-only file system")

    monkeypatch.setattr(store, "_unlink_cached_file", cannot_remove)
    entry = _repo_entry(
        kind="pose-detector",
        files=("weights.pth",),
        allow_patterns=(),
        sha256={"weights.pth": "a" * 64},
    )
    with pytest.raises(ModelError, match=r"^Checksum mismatch for tiny-taesd \(weights.pth\)"):
        dl.download(entry)
