"""TTL trigger output on a serial port's modem-control lines (RTS or DTR).

Serial *commands* reach a stimulator with several ms of latency and jitter; a TTL edge
on a modem-control line of a native UART is set by one ``ioctl`` (TIOCMBIS/TIOCMBIC)
and is how Magstim's QuickFire and many lab trigger cables work. USB-serial adapters
add their USB polling interval (~1 ms) to that.
"""

from __future__ import annotations

from typing import ClassVar

import pylsl
import serial

from stimloop.devices.base import TriggerLine, wait_until
from stimloop.devices.errors import DeviceError, ErrorCode, PortError


class SerialTTL(TriggerLine):
    """TTL pulses on RTS or DTR.

    Parameters
    ----------
    port : str
        Serial device (a real UART or USB-serial adapter; a pty has no such lines).
    line : {"rts", "dtr"}
        Which modem-control line carries the trigger.
    active_high : bool
        Whether "active" means the line asserted.
    """

    name: ClassVar[str] = "serial-ttl"
    description: ClassVar[str] = "TTL trigger on a serial port's RTS or DTR line"

    def __init__(self, port: str, line: str = "rts", active_high: bool = True) -> None:
        if line not in ("rts", "dtr"):
            raise DeviceError(ErrorCode.BAD_ARGUMENT, f"line must be 'rts' or 'dtr', got {line!r}")
        self.port, self.line, self.active_high = port, line, active_high
        self._ser: serial.Serial | None = None

    def _set(self, active: bool) -> None:
        assert self._ser is not None
        setattr(self._ser, self.line, active == self.active_high)

    def open(self) -> None:
        if self._ser is not None:
            raise DeviceError(ErrorCode.ALREADY_CONNECTED, f"{self.name}: {self.port} already open")
        try:
            self._ser = serial.Serial(self.port)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(
                ErrorCode.PORT_UNAVAILABLE, f"{self.name}: cannot open {self.port!r}: {exc}"
            ) from exc
        try:
            self._set(False)
        except (serial.SerialException, OSError) as exc:
            self._ser.close()
            self._ser = None
            raise PortError(
                ErrorCode.UNSUPPORTED,
                f"{self.name}: {self.port!r} has no {self.line.upper()} modem-control line ({exc})",
            ) from exc

    def pulse(self, at: float | None = None, width_s: float = 0.001) -> float:
        if self._ser is None:
            raise DeviceError(ErrorCode.NOT_CONNECTED, f"{self.name}: not open; call open()")
        if not (0 < width_s <= 0.1):
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT, f"width_s must be in (0, 0.1] s, got {width_s!r}"
            )
        if at is not None:
            wait_until(float(at))
        try:
            t = pylsl.local_clock()
            self._set(True)
            wait_until(t + width_s)
            self._set(False)
        except (serial.SerialException, OSError) as exc:
            raise PortError(ErrorCode.PORT_LOST, f"{self.name}: {self.port} failed: {exc}") from exc
        return t

    def close(self) -> None:
        if self._ser is None:
            return
        try:
            self._set(False)
        except (serial.SerialException, OSError):
            pass
        self._ser.close()
        self._ser = None
