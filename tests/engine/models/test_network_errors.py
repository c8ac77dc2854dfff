"""No network is told from the exception chain, by type: a download job that cannot reach its
server fails with a NetworkError (kind "network") whatever library raised it
(huggingface_hub's LocalEntryNotFoundError over httpx's ConnectError, urllib's URLError over
socket.gaierror, requests' ConnectionError), and an answer from the server (404, 5xx), a
checksum mismatch or a full disk stays the ModelError it was."""

from __future__ import annotations

import errno
import socket
import urllib.error

import pytest

from studio.core.catalog import load_catalog
from studio.core.errors import JobCancelled, ModelError, NetworkError
from studio.engine.jobs import DownloadRequest, Failed, Runner
from studio.engine.models.jobs import network_failure

try:  # what huggingface_hub uses: httpx2 on Python 3.11+, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]


def _chain(*excs: BaseException) -> BaseException:
    """excs[0] raised from excs[1] raised from ... (as the libraries chain them)."""
    for outer, inner in zip(excs, excs[1:], strict=False):
        outer.__cause__ = inner
    return excs[0]


def _hub_offline() -> BaseException:
    from huggingface_hub.errors import LocalEntryNotFoundError

    dns = socket.gaierror(-2, "Name or service not known")
    return _chain(
        ModelError("offline: cannot download sd-turbo (stabilityai/sd-turbo)"),
        LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
        dns,
    )


def test_no_network_is_told_by_type_through_the_chain():
    import requests

    cases = {
        "hub": _hub_offline(),
        "urllib": _chain(ModelError("failed"), urllib.error.URLError(socket.gaierror(-3, "x"))),
        "requests": _chain(RuntimeError("x"), requests.exceptions.ConnectionError("refused")),
        "dns": socket.gaierror(-2, "Name or service not known"),
        "route": _chain(ModelError("x"), OSError(errno.ENETUNREACH, "Network is unreachable")),
    }
    for name, exc in cases.items():
        assert network_failure(exc) is not None, name
    # URLError's reason is followed too (the socket error it wraps)
    wrapped = urllib.error.URLError(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert network_failure(wrapped) is not None


def test_answers_and_local_failures_are_not_no_network():
    not_found = urllib.error.HTTPError("https://x/y", 404, "Not Found", {}, None)
    server = urllib.error.HTTPError("https://x/y", 503, "Unavailable", {}, None)
    for exc in (
        _chain(ModelError("Not found (404)"), not_found),
        _chain(ModelError("failed"), RuntimeError("retry"), server),
        ModelError("Checksum mismatch for x"),
        OSError(errno.ENOSPC, "No space left on device"),
        _chain(ModelError("interrupted"), ConnectionResetError(errno.ECONNRESET, "reset")),
        ValueError("bad"),
    ):
        assert network_failure(exc) is None, repr(exc)


def _run(monkeypatch, exc: BaseException, model_id: str = "sd-turbo") -> Failed:
    def download(entry, token=None, progress=None):
        raise exc

    monkeypatch.setattr("studio.engine.models.download.download", download)
    final = Runner().run(DownloadRequest(model_id))
    assert isinstance(final, Failed), final
    return final


def test_a_download_job_without_network_fails_as_network(monkeypatch):
    final = _run(monkeypatch, _hub_offline())
    assert final.kind == "network" and final.exit_code == ModelError.exit_code
    entry = load_catalog().get("sd-turbo")
    assert final.message.startswith(f"No network: {entry.name} could not be downloaded")
    assert "huggingface.co" in final.message
    # the raw library text is for the details pane, not the message
    assert "LocalEntryNotFoundError" not in final.message and "ConnectError" not in final.message
    assert "ConnectError" in final.detail or "LocalEntryNotFoundError" in final.detail
    assert "studio " not in final.message  # no CLI command: the GUI shows it
    url = _run(monkeypatch, urllib.error.URLError(socket.gaierror(-2, "x")), "big-lama")
    assert url.kind == "network" and "github.com" in url.message


def test_other_download_failures_keep_their_kind(monkeypatch):
    final = _run(monkeypatch, ModelError("Checksum mismatch for sd-turbo: try again"))
    assert final.kind == "model" and final.message.startswith("Checksum mismatch")
    assert _run(monkeypatch, RuntimeError("boom")).kind == ""  # unexpected: no kind


def test_a_cancelled_download_is_not_a_network_error(monkeypatch):
    from studio.engine.jobs import Cancelled

    def download(entry, token=None, progress=None):
        raise JobCancelled() from _hub_offline()

    monkeypatch.setattr("studio.engine.models.download.download", download)
    assert isinstance(Runner().run(DownloadRequest("sd-turbo")), Cancelled)


def test_network_error_is_a_model_error_with_its_kind():
    e = NetworkError("No network", "detail")
    assert isinstance(e, ModelError) and e.kind == "network" and e.exit_code == 3
    assert ModelError("x").kind == "model" and JobCancelled().kind == "cancelled"


@pytest.mark.parametrize("offline_env", ["STUDIO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_switch_is_not_reported_as_a_network_failure(monkeypatch, offline_env):
    """The user's offline switch is a setting, not a missing network: its own ModelError."""
    monkeypatch.setenv(offline_env, "1")
    final = Runner().run(DownloadRequest("big-lama"))
    assert isinstance(final, Failed) and final.kind == "model" and "offline" in final.message
