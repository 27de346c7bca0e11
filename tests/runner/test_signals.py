"""`stop_on_signals`, with real signals sent to this process: what turns SIGTERM and SIGINT into a cancelled run,
and what leaves a run that is already being finished alone (the end-to-end case is in test_faults.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from overnight.nightly import stop_on_signals
from overnight.runner import Terminated


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread between bytecodes


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_raises_once_and_a_second_is_ignored(signum: int, code: int) -> None:
    raised: list[Terminated] = []
    with stop_on_signals(ignore=lambda: False):
        try:
            deliver(signum)
        except Terminated as stop:
            raised.append(stop)
            deliver(signum)  # during the cleanup the first one started: no second Terminated
    assert [(stop.exit_code, str(stop)) for stop in raised] == [(code, f"terminated by {signal.Signals(signum).name}")]


def test_a_signal_once_the_run_is_being_finished_changes_nothing() -> None:
    """The finish call was on its way (or done): cancelling now would print a summary the record contradicts
    (`cancelled` on screen, `succeeded` in the store, as it did before this rule)."""
    with stop_on_signals(ignore=lambda: True):
        deliver(signal.SIGTERM)
        deliver(signal.SIGINT)


def test_the_previous_handlers_are_back_afterwards() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals(ignore=lambda: False):
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
