"""`studio models list|download|import|verify|remove` end to end (downloads from a server on
127.0.0.1 named in a user catalog in $STUDIO_HOME; never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from studio_model_files import kohya_lora_spec, write_sparse_safetensors  # noqa: E402

from studio.cli import main

PAYLOAD = os.urandom(2 * 1024 * 1024 + 999)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        delay = self.server.delay  # type: ignore[attr-defined]
        try:
            for i in range(0, len(body), 64 * 1024):
                self.wfile.write(body[i : i + 64 * 1024])
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh STUDIO_HOME with a user catalog entry served from 127.0.0.1, online."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.delay = 0.0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/tiny-x4.pth"
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.toml").write_text(
        f"""
[[model]]
id = "tiny-x4"
name = "Tiny x4"
kind = "upscaler"
url = "{url}"
size = {len(PAYLOAD)}
sha256 = "{SHA}"
license = "MIT"
"""
    )
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    home_ns = type("Home", (), {"path": home, "server": srv, "url": url})
    yield home_ns
    srv.shutdown()
    srv.server_close()


def _json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_list_json_has_catalog_with_status(home, capsys):
    data = _json(capsys, "models", "list", "--json")
    ids = {m["id"]: m for m in data["models"]}
    assert {"sd-turbo", "taesd", "big-lama", "tiny-x4"} <= set(ids)
    assert ids["tiny-x4"]["installed"] is False and ids["tiny-x4"]["size"] == len(PAYLOAD)
    assert ids["sd-turbo"]["starter"] is True and ids["sd-turbo"]["license"]
    only = _json(capsys, "models", "list", "--json", "--kind", "upscaler")
    assert {m["kind"] for m in only["models"]} == {"upscaler"}
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "sd-turbo" in out and "2.6 GB" in out


def test_download_verify_remove(home, capsys):
    assert main(["models", "download", "tiny-x4", "--yes"]) == 0
    captured = capsys.readouterr()
    target = home.path / "models" / "upscale_models" / "tiny-x4.pth"
    assert target.read_bytes() == PAYLOAD
    assert "installed at" in captured.out
    assert "tiny-x4: 2.1 MB / 2.1 MB (100%)" in captured.err  # the progress line
    data = _json(capsys, "models", "list", "--json", "--installed")
    assert [m["id"] for m in data["models"]] == ["tiny-x4"]
    assert main(["models", "verify", "tiny-x4"]) == 0
    assert "tiny-x4: ok" in capsys.readouterr().out
    # Corruption is caught, exit 3 with one line.
    target.write_bytes(PAYLOAD[:-1] + b"!")
    assert main(["models", "verify"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Checksum mismatch for tiny-x4" in err
    assert main(["models", "remove", "tiny-x4", "--yes"]) == 0
    assert not target.exists()
    assert main(["models", "verify", "tiny-x4"]) == 3


def test_download_asks_on_a_terminal(home, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or "n")
    assert main(["models", "download", "tiny-x4"]) == 1
    assert "2.1 MB" in capsys.readouterr().out and "Continue?" in asked[0]
    assert not (home.path / "models" / "upscale_models" / "tiny-x4.pth").exists()
    monkeypatch.setattr("builtins.input", lambda q: "y")
    assert main(["models", "download", "tiny-x4"]) == 0
    assert (home.path / "models" / "upscale_models" / "tiny-x4.pth").exists()


@pytest.mark.parametrize("var", ["STUDIO_OFFLINE", "HF_HUB_OFFLINE"])
def test_download_offline_is_exit_3_without_network(home, capsys, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    assert main(["models", "download", "tiny-x4", "--yes"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("studio: error: offline") and err.count("\n") == 1
    assert main(["models", "download", "sd-turbo", "--yes"]) == 3


def test_download_bad_usage(home, capsys):
    assert main(["models", "download", "no-such-model"]) == 2
    assert "Unknown model id" in capsys.readouterr().err
    assert main(["models", "download"]) == 2
    assert main(["models"]) == 2


def test_import_identifies_and_lists(home, tmp_path, capsys):
    lora = write_sparse_safetensors(tmp_path / "inkstyle.safetensors", kohya_lora_spec(768))
    data = _json(capsys, "models", "import", str(lora), "--json")
    assert data[0]["kind"] == "lora" and data[0]["base"] == "sd1"
    assert Path(data[0]["path"]) == home.path / "models" / "loras" / "inkstyle.safetensors"
    listed = _json(capsys, "models", "list", "--json", "--kind", "lora")
    assert [i["name"] for i in listed["imported"]] == ["inkstyle.safetensors"]
    from studio.engine.models.importer import find_lora

    assert find_lora("inkstyle") == home.path / "models" / "loras" / "inkstyle.safetensors"
    # Same file again: fine; a different file with that name: refused.
    assert main(["models", "import", str(lora)]) == 0
    (tmp_path / "x").mkdir()
    other = write_sparse_safetensors(tmp_path / "x" / "inkstyle.safetensors", kohya_lora_spec(1024))
    capsys.readouterr()
    assert main(["models", "import", str(other)]) == 2
    assert "already imported" in capsys.readouterr().err
    assert main(["models", "remove", "inkstyle"]) == 0
    assert find_lora("inkstyle") is None


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_import_refuses_unknown_and_malicious(home, tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(pickle.dumps({"a.weight": [1, 2, 3]}))
    assert main(["models", "import", str(junk)]) == 2
    assert "Could not identify junk.pth" in capsys.readouterr().err
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    assert main(["models", "import", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "never runs" in err and err.count("\n") == 1
    assert not marker.exists()
    assert not (home.path / "models").exists() or not any((home.path / "models").rglob("*.ckpt"))


def test_ctrl_c_cancels_download_and_rerun_resumes(home):
    home.server.delay = 0.05  # ~1.3 MB/s: slow enough to interrupt
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "models", "download", "tiny-x4", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    part = home.path / "models" / "upscale_models" / "tiny-x4.pth.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    home.server.delay = 0.0
    assert main(["models", "download", "tiny-x4", "--yes"]) == 0
    assert (home.path / "models" / "upscale_models" / "tiny-x4.pth").read_bytes() == PAYLOAD
