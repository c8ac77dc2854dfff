"""What a download shows while it runs (studio.engine.models.download): the status line
(bytes, percent, speed, ETA), the ETA format, the smoothed speed and the throttling of
progress events, the sha256 of a file on disk and the offline switch. Expected strings and
numbers are worked out by hand (decimal units, like Hugging Face)."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import pytest

from studio.core.cancel import CancelToken
from studio.core.errors import JobCancelled, ModelError
from studio.engine.models import download as dl

# -- the status line ----------------------------------------------------------------------


def test_status_line_with_total_speed_and_eta():
    p = dl.DownloadProgress("sd-turbo", 123_400_000, 2_600_000_000, 12_300_000.0, 201.0)
    # 123.4 / 2600 = 4.75 % shown rounded; 201 s = 3 min 21 s.
    assert p.line() == "sd-turbo: 123.4 MB / 2.6 GB (5%)  12.3 MB/s  ETA 3:21"


def test_status_line_leaves_out_what_is_unknown():
    assert dl.DownloadProgress("m", 512, 0).line() == "m: 512 B"
    # No speed measured yet: no "0 B/s"; no ETA.
    assert dl.DownloadProgress("m", 1000, 2000, 0.0).line() == "m: 1.0 KB / 2.0 KB (50%)"
    # An ETA of zero is still an ETA.
    assert dl.DownloadProgress("m", 2000, 2000, 5000.0, 0.0).line() == (
        "m: 2.0 KB / 2.0 KB (100%)  5.0 KB/s  ETA 0:00"
    )


def test_status_line_while_verifying_shows_bytes_hashed():
    p = dl.DownloadProgress("m", 1_500_000, 3_000_000, 9.0, 1.0, stage="verify")
    assert p.line() == "m: verifying sha256 1.5 MB"


def test_fraction():
    assert dl.DownloadProgress("m", 1, 4).fraction == 0.25
    assert dl.DownloadProgress("m", 5, 4).fraction == 1.0  # never past the end
    assert dl.DownloadProgress("m", 5, 0).fraction == 0.0  # total unknown
    assert dl.DownloadProgress("m", 0, 10).fraction == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (-3, "0:00"),  # never a negative time
        (59.4, "0:59"),
        (59.6, "1:00"),  # rounded to the second
        (61, "1:01"),
        (600, "10:00"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (3725, "1:02:05"),
        (36_005, "10:00:05"),
    ],
)
def test_eta_format(seconds, text):
    assert dl.format_eta(seconds) == text


# -- speed, ETA and throttling ------------------------------------------------------------


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = _Clock(100.0)
    monkeypatch.setattr(dl, "time", SimpleNamespace(monotonic=c))
    return c


def test_speed_is_smoothed_and_gives_the_eta(clock):
    events = []
    m = dl._Meter("m", 10_000, events.append)
    clock.t = 100.5
    m.add(1000)  # 1000 B in 0.5 s: 2000 B/s, the first measurement taken as is
    assert (m.speed, events[-1].done, events[-1].total) == (2000.0, 1000, 10_000)
    assert events[-1].eta == 9000 / 2000
    clock.t = 101.0
    m.add(2000)  # 4000 B/s over the last 0.5 s: 0.7 * 2000 + 0.3 * 4000
    assert m.speed == pytest.approx(2600.0)
    assert events[-1].speed == pytest.approx(2600.0)
    assert events[-1].eta == pytest.approx(7000 / 2600)
    assert events[-1].stage == "download"


def test_speed_is_measured_over_a_quarter_second_at_least(clock):
    m = dl._Meter("m", 10_000, None)
    clock.t = 100.125
    m.add(1000)  # too short an interval to measure
    assert m.speed == 0.0
    clock.t = 100.25
    m.add(1000)  # 2000 B in 0.25 s
    assert m.speed == 8000.0


def test_resumed_bytes_do_not_count_as_speed(clock):
    events = []
    m = dl._Meter("m", 10_000, events.append)
    m.start_at(6000)
    clock.t = 100.5
    m.add(1000)
    assert m.speed == 2000.0  # 1000 B in 0.5 s, not 7000
    assert (events[-1].done, events[-1].eta) == (7000, 1.5)


def test_progress_events_are_throttled_to_ten_a_second(clock):
    clock.t = 0.0
    events = []
    m = dl._Meter("m", 10_000, events.append)
    clock.t = 0.1
    m.add(100)  # 0.1 s after the last report (none yet, at time 0): reported
    clock.t = 0.15
    m.add(100)  # 0.05 s later: held back
    assert [e.done for e in events] == [100]
    m.add(100, force=True)  # the final report is never held back
    assert [e.done for e in events] == [100, 300]
    clock.t = 0.3
    m.add(100)
    assert [e.done for e in events] == [100, 300, 400]


def test_snapshot_when_the_total_is_unknown_or_passed(clock):
    m = dl._Meter("m", 0, None)
    clock.t = 101.0
    m.add(3000)
    snap = m.snapshot()
    assert (snap.done, snap.total, snap.speed, snap.eta) == (3000, 3000, 3000.0, None)
    m = dl._Meter("m", 1000, None)
    clock.t = 102.0
    m.add(1500)  # more than announced: the total follows, nothing left
    snap = m.snapshot("verify")
    assert (snap.total, snap.eta, snap.stage) == (1500, 0.0, "verify")


def test_emit_reports_the_stage(clock):
    events = []
    m = dl._Meter("m", 10, events.append, stage="verify")
    m.start_at(4)
    m.emit("done")
    assert [(e.model_id, e.done, e.total, e.stage) for e in events] == [("m", 4, 10, "done")]
    dl._Meter("m", 10, None).emit("done")  # no callback: nothing to report to


# -- sha256 of a file on disk -------------------------------------------------------------


def test_sha256_file_hashes_in_blocks_and_reports_bytes(tmp_path, clock):
    data = os.urandom(2 * dl.CHUNK + 777)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    events = []
    meter = dl._Meter("m", 0, events.append, stage="verify")
    assert dl.sha256_file(path, CancelToken(), meter) == hashlib.sha256(data).hexdigest()
    assert meter.done == len(data)
    assert dl.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_file_stops_on_cancel(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        dl.sha256_file(path, token)


# -- offline switch -----------------------------------------------------------------------


@pytest.mark.parametrize("var", ["STUDIO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_message_says_what_to_do(monkeypatch, var):
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    dl.ensure_online("sd-turbo")  # online: nothing happens
    monkeypatch.setenv(var, "1")
    with pytest.raises(ModelError) as err:
        dl.ensure_online("sd-turbo")
    msg = str(err.value)
    assert msg.startswith("offline: cannot download sd-turbo")
    assert "; switch offline mode off" in msg and msg.endswith("`studio models import`")


def test_a_nearly_stalled_link_still_shows_its_speed():
    # Under 1 B/s: "0 B/s" tells the user the link is stalled, not that nothing was measured.
    assert dl.DownloadProgress("m", 10, 0, 0.5).line() == "m: 10 B  0 B/s"


def test_cancel_while_hashing_stops_at_the_next_block(tmp_path, clock):
    data = os.urandom(3 * dl.CHUNK)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    token = CancelToken()
    meter = dl._Meter("m", 0, lambda p: token.cancel(), stage="verify")  # cancel at once
    with pytest.raises(JobCancelled):
        dl.sha256_file(path, token, meter)
    assert meter.done < len(data)


def test_a_nearly_stalled_link_still_gets_an_eta(clock):
    m = dl._Meter("m", 100, None)
    clock.t = 102.0
    m.add(1)  # 1 B in 2 s
    assert m.snapshot().eta == 99 / 0.5
