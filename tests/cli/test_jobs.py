"""The job plumbing every CLI command shares (studio/cli/jobs.py)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from studio.cli.jobs import ctrl_c_cancels, error_for, finished_or_raise
from studio.core.errors import BadInput, JobCancelled, ModelError, StudioError
from studio.engine.jobs.events import Cancelled, Failed, Finished


@pytest.mark.parametrize(
    "code,cls", [(2, BadInput), (3, ModelError), (130, JobCancelled), (1, StudioError)]
)
def test_failed_event_becomes_the_error_with_its_exit_code(code, cls):
    err = error_for(Failed(7, "it broke", "details", code))
    assert type(err) is cls and err.exit_code == code
    assert err.message == "it broke" and err.detail == "details"


def test_finished_or_raise():
    done = Finished(1, (np.zeros((1, 1, 3), np.uint8),))
    assert finished_or_raise(done) is done
    with pytest.raises(JobCancelled):
        finished_or_raise(Cancelled(1, 3))
    with pytest.raises(ModelError):
        finished_or_raise(Failed(1, "no model", "", 3))


def test_first_ctrl_c_cancels_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    calls = []
    with ctrl_c_cancels(lambda: calls.append(1)):
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [1]
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_with_nothing_to_cancel_interrupts():
    with pytest.raises(KeyboardInterrupt), ctrl_c_cancels(lambda: False):
        os.kill(os.getpid(), signal.SIGINT)
