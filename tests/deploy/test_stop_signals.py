"""deploy serve's stop signals, in this process: the first raises Stopped, a repeat does not, handlers come back.

The real stop of a starting `deploy serve` is tested in tests/serving/test_endpoint.py.
"""
import signal

import pytest

from deploy.stop_signals import STOP_SIGNALS, Stopped, stop_on_signals


@pytest.mark.parametrize("signal_number", STOP_SIGNALS)
def test_the_first_stop_signal_raises_and_a_repeat_does_not_cut_the_cleanup_short(signal_number):
    started_with = signal.signal(signal_number, signal.SIG_DFL)  # not ignored, as under `nohup make test`
    try:
        stopped_and_restored(signal_number)
    finally:
        signal.signal(signal_number, started_with)


def stopped_and_restored(signal_number):
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    cleaned_up = False
    with pytest.raises(Stopped) as raised:
        with stop_on_signals():
            try:
                signal.raise_signal(signal_number)
            finally:
                signal.raise_signal(signal_number)  # e.g. the group's copy of the same SIGTERM
                cleaned_up = True
    assert cleaned_up
    assert raised.value.signal_number == signal_number
    assert str(raised.value) == "stopped by %s" % signal.Signals(signal_number).name
    assert {number: signal.getsignal(number) for number in STOP_SIGNALS} == before


def test_after_ignore_more_no_signal_raises():
    with stop_on_signals() as stop_requests:
        stop_requests.ignore_more()  # serve's cleanup after an error: a signal must not cut it short
        signal.raise_signal(signal.SIGTERM)


@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_ignored_at_the_start_stays_ignored_and_sigterm_is_always_handled(ignored):
    # nohup ignores SIGHUP, a script's background job SIGINT: a handler over them stopped a nohup'ed server when its
    # terminal closed (review 27)
    before = signal.signal(ignored, signal.SIG_IGN)
    try:
        with stop_on_signals():
            assert signal.getsignal(ignored) == signal.SIG_IGN
            signal.raise_signal(ignored)  # nothing happens
            with pytest.raises(Stopped):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(ignored) == signal.SIG_IGN
    finally:
        signal.signal(ignored, before)
