"""Typed errors of the orchestration layer (sessions, control, protocols)."""

from __future__ import annotations

from stimloop.dsp.errors import StimloopError


class SessionError(StimloopError, RuntimeError):
    """A session could not start, run or stop as asked; the message says why."""


class ControlError(StimloopError, ValueError):
    """A control command was malformed, unknown, unauthorised or refused."""
