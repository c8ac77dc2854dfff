"""Downloads against a local HTTP server on 127.0.0.1 (never the internet): resume after a
dropped connection, checksum mismatch, cancel, disk full, offline mode, and the Hugging Face
path (snapshot_download replaced by a fake that drives the tqdm adapter)."""

from __future__ import annotations

import errno
import hashlib
import http.server
import json
import os
import shutil
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


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
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


def test_resume_after_dropped_connection(server, tmp_path):
    server.drop_after = dl.CHUNK + 1000
    server.drops_left = 1
    dest = dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    # The second request resumed where the first stopped instead of starting over.
    assert server.requests[0] is None
    assert server.requests[1] == f"bytes={dl.CHUNK + 1000}-"


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
        dl.download_url(server.url, tmp_path / "m.pth", size=len(PAYLOAD), sha256=SHA, retries=1)
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
    with pytest.raises(ModelError, match="^offline"):
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
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
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
