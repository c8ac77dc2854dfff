"""Model downloads: progress (bytes, speed, ETA), resume, cancel, disk check, sha256.

- URL entries: plain HTTP(S) with ``urllib``. Data goes to ``<file>.part``; after an
  interruption (dropped connection, crash, cancel) the next attempt asks for the rest with an
  HTTP ``Range`` request and appends. The sha256 is computed while writing (the existing part
  is hashed first on resume) and checked against the catalog; a mismatch deletes the file.
  The finished file is fsynced and renamed into place atomically.
- Hugging Face repo entries: ``huggingface_hub.snapshot_download`` into the shared cache with
  a tqdm adapter feeding our progress events and checking the cancel token; catalog sha256
  values for repo files are checked afterwards. Resume there is huggingface_hub's: finished
  files are kept and skipped by the next run, a dropped connection is retried with Range
  within a run, but (huggingface_hub 2.x downloads into a per-process temp file) a file that
  was cut off by cancel or a crash starts again.
- Offline (``STUDIO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``): ModelError before any network use.

Progress is reported through a callback taking :class:`DownloadProgress`; the CLI prints it as
a status line, the model manager panel turns it into a Qt signal.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.cancel import CancelToken
from studio.core.catalog import Entry, format_size
from studio.core.errors import JobCancelled, ModelError
from studio.engine.models import store
from studio.engine.models.folders import DISK_MARGIN, check_disk_space  # noqa: F401 - re-exported

CHUNK = 1 << 20  # hashing block size
READ_SIZE = 256 * 1024  # at most this much per network read: cancel and progress stay prompt
USER_AGENT = "Studio-model-downloader/0.1"
TIMEOUT_S = 30.0  # connect and per-read timeout of URL downloads: a stalled server is retried


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report. ``total`` may be 0 when unknown; ``eta`` None when unknown."""

    model_id: str
    done: int
    total: int
    speed: float = 0.0  # bytes per second, smoothed
    eta: float | None = None  # seconds
    stage: str = "download"  # "download" | "verify" | "done"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def line(self) -> str:
        """``"123.4 MB / 2.6 GB  (4%)  12.3 MB/s  ETA 3:21"``."""
        if self.stage == "verify":
            return f"{self.model_id}: verifying sha256 {format_size(self.done)}"
        parts = [f"{self.model_id}: {format_size(self.done)}"]
        if self.total:
            parts[0] += f" / {format_size(self.total)} ({self.fraction:.0%})"
        if self.speed > 0:
            parts.append(f"{format_size(self.speed)}/s")
        if self.eta is not None:
            parts.append(f"ETA {format_eta(self.eta)}")
        return "  ".join(parts)


ProgressCallback = Callable[[DownloadProgress], None]


def format_eta(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Meter:
    """Throttled progress with an exponentially smoothed speed (thread-safe: HF downloads
    report from several worker threads)."""

    def __init__(
        self,
        model_id: str,
        total: int,
        callback: ProgressCallback | None,
        stage: str = "download",
    ) -> None:
        self.model_id = model_id
        self.stage = stage
        self.total = total
        self.callback = callback
        self.done = 0
        self.speed = 0.0
        self._lock = threading.Lock()
        self._t_last = time.monotonic()
        self._done_last = 0
        self._t_emit = 0.0

    def start_at(self, done: int) -> None:
        with self._lock:
            self.done = self._done_last = done

    def add(self, n: int, force: bool = False) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            dt = now - self._t_last
            if dt >= 0.25:
                inst = (self.done - self._done_last) / dt
                self.speed = inst if self.speed == 0 else 0.7 * self.speed + 0.3 * inst
                self._t_last, self._done_last = now, self.done
            if not force and now - self._t_emit < 0.1:
                return
            self._t_emit = now
            event = self.snapshot()
        if self.callback is not None:
            self.callback(event)

    def snapshot(self, stage: str | None = None) -> DownloadProgress:
        total = max(self.total, self.done)
        eta = (total - self.done) / self.speed if self.speed > 0 and self.total else None
        return DownloadProgress(
            self.model_id, self.done, total, self.speed, eta, stage or self.stage
        )

    def emit(self, stage: str) -> None:
        if self.callback is not None:
            self.callback(self.snapshot(stage))


# ------------------------------------------------------------------------------------------
# Checks


def ensure_online(what: str) -> None:
    """ModelError if the app's offline switch or HF_HUB_OFFLINE is on (no network touched)."""
    if store.offline_mode():
        raise ModelError(
            f"offline: cannot download {what} (STUDIO_OFFLINE/HF_HUB_OFFLINE is set); "
            "switch offline mode off or copy the model in with `studio models import`"
        )


def sha256_file(path: Path, token: CancelToken | None = None, meter: _Meter | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if token is not None:
                token.raise_if_cancelled()
            if meter is not None:
                meter.add(len(chunk))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------
# Entry points


def download(
    entry: Entry,
    *,
    token: CancelToken | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download a catalog entry (if not already installed) and return its local path."""
    token = token or CancelToken()
    found = store.find_installed(entry)
    if found is not None:
        return found
    ensure_online(entry.id)
    if entry.url is not None:
        dest = store.kind_dir(entry.kind) / (entry.target_filename or entry.id)
        expected = entry.sha256.get(entry.target_filename or "")
        return download_url(
            entry.url,
            dest,
            size=entry.size,
            sha256=expected,
            token=token,
            progress=progress,
            model_id=entry.id,
        )
    return download_repo(entry, token=token, progress=progress)


def download_url(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    token: CancelToken | None = None,
    progress: ProgressCallback | None = None,
    model_id: str = "",
    retries: int = 3,
    timeout: float | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` with resume, cancel and verification.

    A dropped connection, a stall longer than ``timeout`` (default :data:`TIMEOUT_S`) or a
    5xx/429 answer is retried ``retries`` times, each time resuming where it stopped; after
    that (or on cancel) the ``.part`` stays for the next attempt to resume. A part the server
    refuses to resume (416 while it is shorter than the file) is dropped and the file fetched
    again from the start.
    """
    token = token or CancelToken()
    timeout = TIMEOUT_S if timeout is None else timeout
    model_id = model_id or dest.name
    ensure_online(model_id)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size:
        if have > size:  # not ours, or a different file: start over
            part.unlink()
            have = 0
        check_disk_space(dest.parent, size - have)

    meter = _Meter(model_id, size or 0, progress)
    hasher = hashlib.sha256()
    if have:
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                token.raise_if_cancelled()
    meter.start_at(have)

    attempt = 0
    while True:
        token.raise_if_cancelled()
        try:
            complete, hasher = _fetch_into(url, part, hasher, meter, token, timeout, size)
        except _Retryable as e:
            attempt += 1
            if attempt > retries:
                if part.exists() and part.stat().st_size > 0:
                    msg = f"Download of {model_id} was interrupted ({e}); run it again to resume"
                else:  # nothing to resume from
                    msg = f"Download of {model_id} failed ({e}); try again later"
                raise ModelError(msg, str(e)) from e
            token.wait(min(0.5 * 2**attempt, 5.0))
            continue
        if complete:
            break
    meter.add(0, force=True)

    if sha256:
        actual = hasher.hexdigest()
        if actual != sha256.lower():
            with contextlib.suppress(OSError):
                part.unlink()
            raise ModelError(
                f"Checksum mismatch for {model_id}: the downloaded file was removed "
                f"(expected sha256 {sha256[:12]}..., got {actual[:12]}...); try again",
            )
    try:
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, dest)
    except FileNotFoundError as e:  # removed by another program after the checksum
        raise _vanished(model_id, part) from e
    except OSError as e:
        raise ModelError(f"Could not store {dest}: {e.strerror or e}") from e
    meter.emit("done")
    return dest


class _Retryable(Exception):
    """A transient network failure: retry, resuming from the bytes on disk."""


def _net_reason(e: BaseException, timeout: float) -> str:
    """A network failure in a few words for the user's message, without the library's
    exception names (``IncompleteRead(...)``, ``URLError(...)``)."""
    reason = getattr(e, "reason", None)
    if isinstance(reason, BaseException):  # URLError wraps the socket error
        e = reason
    elif isinstance(reason, str) and reason:
        return reason
    if isinstance(e, TimeoutError):
        return f"no answer for {timeout:g} s"
    if isinstance(e, http.client.IncompleteRead | ConnectionError) and not (
        isinstance(e, OSError) and e.strerror
    ):
        return "the connection closed early"
    if isinstance(e, http.client.HTTPException):
        return "the server sent an invalid response"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return "the connection failed"


def _vanished(model_id: str, part: Path) -> ModelError:
    return ModelError(
        f"The partial download {part.name} of {model_id} was removed by another program "
        "before it was stored; run the download again"
    )


def _fetch_into(
    url: str,
    part: Path,
    hasher,
    meter: _Meter,
    token: CancelToken,
    timeout: float,
    size: int | None,
):
    """One HTTP attempt appending to ``part``. Returns (complete, hasher)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as e:
        if e.code == 416 and have and (size is None or have == size):
            return True, hasher  # the part is already complete
        if e.code == 416 and have:
            # The server refuses to resume a part shorter than the file (it changed there,
            # or the part is not ours): useless for resume. Start over without a Range.
            try:
                part.unlink(missing_ok=True)
            except OSError as err:
                raise ModelError(f"Could not remove {part}: {err.strerror or err}") from err
            meter.start_at(0)
            return False, hashlib.sha256()
        if e.code in (401, 403):
            raise ModelError(
                f"Access denied ({e.code}) for {url}: the file needs permission or a token"
            ) from e
        if e.code == 404:
            raise ModelError(f"Not found (404): {url}") from e
        if e.code >= 500 or e.code == 429:
            raise _Retryable(f"server error {e.code}") from e
        raise ModelError(f"Download failed: HTTP {e.code} for {url}") from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        netloc = urllib.request.urlparse(url).netloc
        raise _Retryable(f"{netloc}: {_net_reason(e, timeout)}") from e

    with response:
        status = response.status
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise ModelError(f"Server sent an unexpected range ({content_range}) for {url}")
            mode = "ab"
        else:
            if have:
                # The server ignored Range (a 200, or another 2xx from a proxy): only a 206
                # is the rest of the file, anything else is all of it. Start over.
                have = 0
                hasher = hashlib.sha256()
                meter.start_at(0)
            mode = "wb"
        length = response.headers.get("Content-Length")
        expected_total = have + int(length) if length and length.isdigit() else None
        if expected_total is not None:
            if size and expected_total != size:
                raise ModelError(
                    f"Server reports {expected_total} bytes for {url}, the catalog says {size}"
                )
            meter.total = expected_total
        try:
            with open(part, mode) as f:
                while True:
                    token.raise_if_cancelled()
                    try:
                        # read1: whatever has arrived (up to READ_SIZE), so a slow link
                        # still reports progress and sees a cancel within one read.
                        chunk = response.read1(READ_SIZE)
                    except (
                        http.client.IncompleteRead,
                        ConnectionError,
                        TimeoutError,
                        OSError,
                    ) as e:
                        raise _Retryable(f"connection lost: {_net_reason(e, timeout)}") from e
                    if not chunk:
                        break
                    f.write(chunk)
                    hasher.update(chunk)
                    meter.add(len(chunk))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ModelError(
                    f"Disk full while writing {part.name}: free some space and run the "
                    "download again to resume",
                    repr(e),
                ) from e
            raise ModelError(f"Could not write {part}: {e.strerror or e}", repr(e)) from e
    try:
        got = part.stat().st_size
    except FileNotFoundError:  # removed while we wrote to it: the bytes went nowhere
        raise _vanished(meter.model_id, part) from None
    total = expected_total or size
    if total is not None and got < total:
        raise _Retryable(f"connection closed after {got} of {total} bytes")
    return True, hasher


# ------------------------------------------------------------------------------------------
# Hugging Face repos


def _progress_tqdm(meter: _Meter, token: CancelToken) -> type:
    """A tqdm class for snapshot_download's ``tqdm_class``: silent, forwards the aggregated
    bytes-written bar to ``meter`` and raises JobCancelled from update() once cancelled
    (each download thread stops at its next chunk; the cache keeps the partial file for
    resume)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class StudioTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            self._studio_track = kwargs.get("name") == "huggingface_hub.snapshot_download"
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            token.raise_if_cancelled()
            n = int(n or 0)
            self.n += n
            if self._studio_track:
                if self.total and self.total > meter.total:
                    meter.total = int(self.total)
                meter.add(n)
            return None

    return StudioTqdm


def download_repo(
    entry: Entry, *, token: CancelToken | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Download a Hugging Face repo entry into the shared HF cache; returns find_installed's
    path (the snapshot folder, or the file for a one-file entry)."""
    token = token or CancelToken()
    assert entry.repo is not None
    ensure_online(entry.id)
    cache = store.hf_cache_dir()
    check_disk_space(cache, entry.size)
    meter = _Meter(entry.id, entry.size, progress)
    patterns = list(entry.files) or list(entry.allow_patterns) or None
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            entry.repo,
            revision=entry.revision,
            cache_dir=str(cache),
            allow_patterns=patterns,
            tqdm_class=_progress_tqdm(meter, token),
            max_workers=4,
            # Read now (huggingface_hub reads it once, at import): a mirror or a local hub.
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except JobCancelled:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to one clear line
        token.raise_if_cancelled()
        raise hub_error(entry, e) from e
    meter.add(0, force=True)
    folder_path = Path(folder)
    if entry.sha256:
        verify_meter = _Meter(entry.id, 0, progress, stage="verify")
        for name, expected in entry.sha256.items():
            path = folder_path / name
            actual = sha256_file(path, token, verify_meter) if path.is_file() else ""
            if actual != expected:
                with contextlib.suppress(ModelError):
                    store._unlink_cached_file(path)
                raise ModelError(
                    f"Checksum mismatch for {entry.id} ({name}): the file was removed; try again"
                )
    found = store.find_installed(entry)
    if found is None:
        raise ModelError(
            f"{entry.id}: the download finished but the files Studio needs are missing from "
            f"{entry.repo} (patterns {patterns})"
        )
    meter.emit("done")
    return found


def hub_error(entry: Entry, e: BaseException) -> ModelError:
    """One clear line for a huggingface_hub failure (gated/auth, missing, offline, disk)."""
    from huggingface_hub import errors as hf_errors

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, hf_errors.GatedRepoError) or status in (401, 403):
        return ModelError(
            f"{entry.repo} is gated or private: accept its licence on huggingface.co/"
            f"{entry.repo}, then log in with `huggingface-cli login` (or set HF_TOKEN)",
            str(e),
        )
    if isinstance(e, hf_errors.RepositoryNotFoundError):
        return ModelError(
            f"{entry.repo} was not found on the Hugging Face Hub (if it is private, log in with "
            "`huggingface-cli login` or set HF_TOKEN)",
            str(e),
        )
    # Before EntryNotFoundError: LocalEntryNotFoundError (no network, nothing cached) is one.
    if isinstance(e, hf_errors.OfflineModeIsEnabled | hf_errors.LocalEntryNotFoundError):
        return ModelError(
            f"offline: cannot download {entry.id} ({entry.repo}); check the network or "
            "switch offline mode off",
            str(e),
        )
    if isinstance(e, hf_errors.RevisionNotFoundError | hf_errors.EntryNotFoundError):
        return ModelError(f"{entry.repo}: {type(e).__name__}: {e}".splitlines()[0], str(e))
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return ModelError(f"Disk full while downloading {entry.id}: free some space and retry")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ModelError(f"Download of {entry.id} failed: {first}", repr(e))


# ------------------------------------------------------------------------------------------
# Verify


@dataclass(frozen=True)
class VerifyResult:
    model_id: str
    file: str
    ok: bool | None  # None: nothing to check against (no published sha256) or not installed
    message: str


def verify(
    entry: Entry, token: CancelToken | None = None, progress: ProgressCallback | None = None
) -> list[VerifyResult]:
    """Check installed files of ``entry`` against the catalog's sha256 values."""
    path = store.find_installed(entry)
    if path is None:
        return [VerifyResult(entry.id, "", None, "not installed")]
    if not entry.sha256:
        return [VerifyResult(entry.id, str(path), None, "installed; no published sha256")]
    results = []
    meter = _Meter(entry.id, 0, progress, stage="verify")
    for name, expected in entry.sha256.items():
        if path.is_file():
            file = path if path.name == name else path.parent / name
        else:
            file = path / name
        if not file.is_file():
            results.append(VerifyResult(entry.id, str(file), False, "missing"))
            continue
        actual = sha256_file(file, token, meter)
        ok = actual == expected
        results.append(
            VerifyResult(
                entry.id, str(file), ok, "ok" if ok else f"MISMATCH (sha256 {actual[:16]}...)"
            )
        )
    return results
