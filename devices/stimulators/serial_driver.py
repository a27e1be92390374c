"""What the serial stimulator drivers share: opening the port, connection checks, arguments.

The Magstim (:mod:`stimloop.devices.stimulators.magstim`) and MagVenture
(:mod:`stimloop.devices.stimulators.magventure`) drivers speak different protocols over
the same kind of link, an RS-232 port at 8 data bits, no parity and 1 stop bit. Each
failure here is turned into the device layer's typed errors with the same message in
both drivers, so the session log reads alike whichever stimulator is attached.
"""

from __future__ import annotations

import serial

from stimloop.devices.base import is_number
from stimloop.devices.errors import DeviceError, ErrorCode, PortError

try:  # tcflush on a hung-up tty raises termios.error, which is not an OSError
    from termios import error as _TermiosError
except ImportError:  # Windows
    _TermiosError = OSError  # type: ignore[misc,assignment]

#: Exceptions a serial read, write, flush or modem-line change raises when the port fails.
IO_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _TermiosError)


def open_serial_port(driver: str, port: str, baudrate: int, timeout_s: float) -> serial.Serial:
    """Open ``port`` at 8N1 with the same read and write timeout.

    Parameters
    ----------
    driver : str
        Driver name, the first word of every error message.
    port : str
        Serial device, e.g. ``"/dev/ttyUSB0"`` or ``"COM3"``.
    baudrate : int
        Line rate in baud (bit/s).
    timeout_s : float
        Read and write timeout, s.

    Returns
    -------
    serial.Serial
        The open port.

    Raises
    ------
    PortError
        PORT_UNAVAILABLE if the port does not exist, is busy or refuses the settings.
    """
    try:
        return serial.Serial(
            port,
            baudrate=baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=timeout_s,
            write_timeout=timeout_s,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortError(
            ErrorCode.PORT_UNAVAILABLE, f"{driver}: cannot open serial port {port!r}: {exc}"
        ) from exc


def close_serial_port(ser: serial.Serial) -> None:
    """Close ``ser``, ignoring a port that already vanished (nothing is left to release)."""
    try:
        ser.close()
    except (serial.SerialException, OSError):
        pass


def refuse_if_connected(driver: str, ser: serial.Serial | None, port: str) -> None:
    """Raise ALREADY_CONNECTED if the driver already holds a port.

    Raises
    ------
    DeviceError
        ALREADY_CONNECTED, naming ``port``.
    """
    if ser is not None:
        raise DeviceError(ErrorCode.ALREADY_CONNECTED, f"{driver}: already connected to {port}")


def require_port(driver: str, ser: serial.Serial | None) -> serial.Serial:
    """The driver's open port, or NOT_CONNECTED if ``connect()`` has not opened one.

    Raises
    ------
    DeviceError
        NOT_CONNECTED.
    """
    if ser is None:
        raise DeviceError(ErrorCode.NOT_CONNECTED, f"{driver}: not connected; call connect()")
    return ser


def require_usable(
    driver: str, ser: serial.Serial | None, fault: str | None, fault_code: ErrorCode
) -> serial.Serial:
    """The open port, unless the driver is not connected or has recorded a fault.

    Parameters
    ----------
    driver : str
        Driver name.
    ser : serial.Serial or None
        The driver's port (None when not connected).
    fault : str or None
        The fault the driver recorded (port lost, keep-alive lost), or None.
    fault_code : ErrorCode
        Code raised for that fault.

    Raises
    ------
    DeviceError
        NOT_CONNECTED, or ``fault_code`` with the fault as message.
    """
    ser = require_port(driver, ser)
    if fault is not None:
        raise DeviceError(fault_code, f"{driver}: {fault}")
    return ser


def require_armed(driver: str, armed: bool) -> None:
    """Raise NOT_ARMED unless the driver has armed the stimulator.

    Raises
    ------
    DeviceError
        NOT_ARMED.
    """
    if not armed:
        raise DeviceError(ErrorCode.NOT_ARMED, f"{driver}: not armed; call arm() first")


def check_whole_percent(driver: str, intensity_pct: float, lo: float, hi: float) -> int:
    """Validate an intensity that the device takes in whole percent of its maximum output.

    Parameters
    ----------
    driver : str
        Driver name.
    intensity_pct : float
        Requested intensity, % of maximum stimulator output (MSO); anything else
        (a bool, a string, NaN) is refused.
    lo, hi : float
        Allowed range, % MSO.

    Returns
    -------
    int
        The intensity as a whole number of % MSO.

    Raises
    ------
    DeviceError
        BAD_ARGUMENT if it is not a number in ``[lo, hi]`` or not a whole percent.
    """
    if not (is_number(intensity_pct) and lo <= intensity_pct <= hi):
        raise DeviceError(
            ErrorCode.BAD_ARGUMENT,
            f"{driver}: intensity {intensity_pct!r} % outside [{lo:g}, {hi:g}]",
        )
    if int(intensity_pct) != intensity_pct:
        raise DeviceError(
            ErrorCode.BAD_ARGUMENT,
            f"{driver}: intensity is set in whole percent, got {intensity_pct!r}",
        )
    return int(intensity_pct)
