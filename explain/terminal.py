"""Untrusted text (image names, paths) as a terminal shows it: control characters escaped."""

from __future__ import annotations

import logging
import os
import re
import sys

from serving.contract import redact_url

__all__ = ["BIDI_CONTROLS", "LOG_FORMAT", "TerminalFormatter", "keep_standard_streams_open", "log_to_terminal",
           "printable"]

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# C0 controls (newline, ESC, ...), DEL and C1 controls: a name holding them could split a log line
# or send escape sequences to the terminal; the line and paragraph separators (str.splitlines and log
# viewers break lines there) and the bidirectional embeddings, overrides and isolates (a terminal that
# lays out right-to-left text would show 'x\u202ebroken.png' as 'xgnp.nekorb')
# The bidirectional embeddings, overrides and isolates, as a regular expression's character ranges
# (right-to-left letters need none); report.html escapes them too
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}]")


def printable(text: str) -> str:
    """``text`` with each control character escaped as Python writes it: ``a\\nb``, ``\\x1b[2J``, ``\\u202e``."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


HTTP_LOGGERS = ("urllib3", "requests")  # loggers whose string arguments may be URLs with credentials


class TerminalFormatter(logging.Formatter):
    """A formatter that escapes control characters in a record's string and path arguments (the
    names a message quotes), not in the message's own text."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and any(isinstance(arg, (str, os.PathLike)) for arg in record.args):
            # the HTTP libraries' own DEBUG lines (-vv) name the request's URL: its query values and password
            # are shown as ``***``, as in clearsight's messages
            hide = redact_url if record.name.split(".")[0] in HTTP_LOGGERS else str
            record = logging.makeLogRecord({**record.__dict__, "args": tuple(
                printable(hide(os.fspath(arg))) if isinstance(arg, (str, os.PathLike)) else arg
                for arg in record.args)})
        return super().format(record)


def keep_standard_streams_open() -> None:
    """Entry points only: a standard stream the command was started without (``2>&-``) becomes /dev/null.

    Python sets sys.stderr to None then: the progress bar and the log lines failed on it and a run
    stopped at its first image without a word. And a file or socket opened later would take the free
    descriptor 0, 1 or 2 and get what is written to that stream.
    """
    for fd in (0, 1, 2):  # in order: the lower ones are open, so /dev/null gets the lowest free one, this one
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115 - for the process's life


def log_to_terminal(level: int) -> None:
    """Entry points only: log at ``level`` on stderr, names escaped (``TerminalFormatter``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
