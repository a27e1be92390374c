"""Typed errors of the device layer (HAL).

Every error carries a stable machine-readable ``code`` (an :class:`ErrorCode`) and a
message that names what was wrong, the value seen and the value allowed, so that the
session log, the LSL marker stream and the GUI can all show the same explanation.
The idea of an error code carried by the exception is BrainFlow's
(``BrainFlowError.exit_code``); the names here are stimloop's own.
"""

from __future__ import annotations

from enum import StrEnum

from stimloop.dsp.errors import StimloopError


class ErrorCode(StrEnum):
    """Stable codes for every refusal or failure of the HAL."""

    # lifecycle / state machine
    NOT_CONNECTED = "not_connected"
    ALREADY_CONNECTED = "already_connected"
    NOT_ARMED = "not_armed"
    NOT_READY = "not_ready"
    CLOSED = "closed"
    # transport and protocol
    PORT_UNAVAILABLE = "port_unavailable"
    PORT_LOST = "port_lost"
    NO_REPLY = "no_reply"
    GARBLED_REPLY = "garbled_reply"
    DEVICE_REJECTED = "device_rejected"
    KEEPALIVE_LOST = "keepalive_lost"
    UNSUPPORTED = "unsupported"
    # registry / configuration
    UNKNOWN_DRIVER = "unknown_driver"
    BAD_CONFIG = "bad_config"
    BAD_ARGUMENT = "bad_argument"
    # safety
    INTENSITY_LIMIT = "intensity_limit"
    PULSE_LIMIT = "pulse_limit"
    IPI_LIMIT = "ipi_limit"
    TRAIN_LIMIT = "train_limit"
    INTER_TRAIN_LIMIT = "inter_train_limit"
    RMT_REQUIRED = "rmt_required"
    DEVICE_LIMIT = "device_limit"
    STALE_DATA = "stale_data"
    LATE = "late"
    WATCHDOG = "watchdog"
    EMERGENCY_STOP = "emergency_stop"
    COIL = "coil"


class DeviceError(StimloopError, RuntimeError):
    """Base class of every device-layer error.

    Parameters
    ----------
    code : ErrorCode
        Stable code of the failure.
    message : str
        Human-readable explanation: what was wrong, the value seen, the value allowed.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"[{code.value}] {message}")
        self.code = ErrorCode(code)
        self.message = message


class ConfigError(DeviceError):
    """A device or safety configuration is malformed or names an unknown driver."""


class PortError(DeviceError):
    """The serial port could not be opened, or vanished while in use."""


class ProtocolError(DeviceError):
    """The device did not reply, replied with a bad checksum/frame, or rejected a command."""


class SafetyError(DeviceError):
    """The safety gate refused a request; the stimulator did not act on it."""


class EmergencyStopError(SafetyError):
    """The latching emergency stop is engaged; nothing fires until it is reset."""


class StaleDataError(SafetyError):
    """The stream that drives the stimulator is older than allowed or flagged bad."""


class WatchdogError(SafetyError):
    """The controlling loop missed its heartbeat; the stimulator was disarmed."""
