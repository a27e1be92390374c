"""Typed errors of the stream layer.

Each message names what was wrong, the value seen and the value expected, so that a
researcher can fix a config or a cable without reading code.
"""

from __future__ import annotations

from stimloop.dsp.errors import StimloopError


class StreamError(StimloopError, RuntimeError):
    """Base class of every stream-layer error."""


class StreamNotFoundError(StreamError):
    """No LSL stream matched the requested source_id (and hostname) in time."""


class AmbiguousStreamError(StreamError):
    """Several LSL streams matched one source_id; stimloop never guesses between them."""


class StreamMismatchError(StreamError):
    """A resolved stream differs from what the config expects (rate, channels, format)."""


class StreamLostError(StreamError):
    """The stream's outlet vanished; with ``recover=False`` the inlet will not reattach."""


class StreamClockError(StreamError):
    """The stream's timestamps are not on the LSL clock (e.g. seconds since 1970)."""
