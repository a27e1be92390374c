"""The root of every error stimloop raises on purpose.

:class:`StimloopError` lives here, in the one folder that imports nothing else of
stimloop's, so that every layer can derive its typed errors from it without an upward
import. The command line turns a :class:`StimloopError` into a one-line message and
lets every other exception keep its traceback: those are bugs, and a traceback is how
they get reported.
"""

from __future__ import annotations


class StimloopError(Exception):
    """Base of every error stimloop raises on purpose (bad input, refused action).

    Each message names what was wrong, the value seen and what is allowed.
    """


class DSPError(StimloopError, ValueError):
    """Invalid argument or input of a ``stimloop.dsp`` function."""


class SignalError(DSPError):
    """Invalid argument or input of a heart-signal function (names what and what is allowed)."""
