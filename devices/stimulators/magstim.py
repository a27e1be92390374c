"""Magstim 200², BiStim² and Rapid² over the documented serial protocol.

Protocol (as documented by Magstim's remote-control notes and reimplemented publicly by
McNair's MagPy, github.com/nicolasmcnair/magpy, ``magpy/magstim.py``, and by Boulay's
magstim_python README; this module copies no code from either):

- RS-232, 9600 baud, 8 data bits, no parity, 1 stop bit.
- Host command: one ASCII command character, ASCII data characters, one checksum byte.
  The checksum is the bitwise inverse of the low byte of the sum of all preceding bytes:
  ``~sum(bytes) & 0xFF``. Worked example from both sources: ``"Q@"`` → 0x51 + 0x40 =
  0x91 → checksum 0x6E (``"n"``); ``"X@"`` → 0x98 → 0x67.
- Reply: the echoed command character, data bytes, checksum (same rule). Errors:
  ``"?"`` + checksum (unknown command), ``<cmd>"?"`` + checksum (invalid data),
  ``<cmd>"S"`` + checksum (command conflicts with the current state).
- Instrument status byte (first data byte of most replies): bit 0 standby, 1 armed,
  2 ready, 3 coil present, 4 replace coil, 5 error present, 6 error type, 7 remote
  control active. Rapid² replies add a second byte: bit 0 enhanced power, 1 train,
  2 wait, 3 single-pulse mode, 4 HV PSU connected, 5 coil ready, 6 theta PSU,
  7 modified coil algorithm.
- Commands used here: ``Q@`` enable remote control (also the keep-alive poke), ``R@``
  disable, ``EB`` arm, ``EA`` disarm, ``EH`` fire, ``@nnn`` power A (BiStim ``Annn`` power
  B), ``J@`` parameters (200²/BiStim: power A, power B, interval; 3 digits each),
  ``F@`` coil temperatures (two 3-digit values in 0.1 °C), Rapid² ``\\@`` parameters,
  ``Bnnnn`` frequency (0.1 Hz), ``Dnnnnn`` pulses, ``[nnnn`` duration (0.1 s)
  (software version >= 9 field widths).
- No command stops a train: disarm (``EA``) is the remote-control stop, and a disarmed
  unit has no charge to discharge, so ``EA`` ends a running Rapid² train. ``status()``
  reports a train running while the unit's armed bit (read by ``Q@``) is set and the last
  train fired is not over. It does not read Rapid² status bit 1 ("train") instead: that
  needs the 27-byte ``\\@`` exchange, 28 ms of a 9600-baud line during which a disarm from
  another thread (the e-stop) would wait for the port.
- Keep-alive: the unit drops remote control (and disarms) if it is not contacted for
  about 1 s; MagPy pokes with ``Q@`` every 500 ms. We poke every 0.5 s while armed and
  every 5 s while disarmed, and reset the timer on every command.
- QuickFire: a TTL trigger on the serial cable's RTS line (custom cable), ~1 ms latency
  against several ms for the ``EH`` command; hold it a few ms, then release.

Rapid² maximum repetition rate by power level (:data:`RAPID_MAX_FREQUENCY_HZ`) is the
manufacturer table tabulated in MagPy's ``magpy/rapid_system_info.yaml`` (by mains
voltage and Rapid² variant); it is data, reproduced here as numbers.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

import pylsl
import serial

from stimloop.devices.base import Stimulator, StimulatorStatus, TrainSpec, wait_until
from stimloop.devices.errors import DeviceError, ErrorCode, PortError, ProtocolError
from stimloop.devices.stimulators.serial_driver import (
    IO_ERRORS,
    check_whole_percent,
    close_serial_port,
    open_serial_port,
    refuse_if_connected,
    require_armed,
    require_port,
    require_usable,
)

logger = logging.getLogger("stimloop.devices")


def checksum(data: bytes) -> int:
    """Magstim checksum: bitwise inverse of the low byte of the byte sum."""
    return ~sum(data) & 0xFF


def encode(command: str) -> bytes:
    """ASCII command + data, followed by its checksum byte."""
    raw = command.encode("ascii")
    return raw + bytes([checksum(raw)])


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split())


#: Maximum rTMS frequency in Hz indexed by (mains voltage, variant) then power 0..100 %.
#: Variant 0 = Rapid², 1 = Super Rapid², 2 = Super Rapid² Plus.
RAPID_MAX_FREQUENCY_HZ: dict[tuple[int, int], tuple[int, ...]] = {
    # 240 V, Rapid², power 0..100 %
    (240, 0): _ints(
        "50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 50 "
        "50 50 50 50 50 50 50 50 50 50 50 46 45 44 42 41 41 39 39 38 "
        "37 36 34 33 33 33 33 33 32 31 30 30 29 29 28 28 27 27 26 26 "
        "25 25 24 24 23 23 22 22 21 21 20 20 20 20 19 19 19 19 19 18 "
        "18 18 18 18 18 17 17 17 17 17 17 17 16 16 16 16 16 16 15 15 "
        "15 "
    ),
    # 240 V, Super Rapid², power 0..100 %
    (240, 1): _ints(
        "100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 "
        "100 100 100 100 100 100 100 100 100 100 100 98 95 93 90 88 85 83 80 78 "
        "75 73 70 68 65 63 60 58 55 53 50 50 49 49 48 48 47 47 46 46 "
        "45 45 44 44 43 43 42 42 41 41 40 40 39 39 38 38 37 37 36 36 "
        "35 35 34 34 33 33 32 32 31 31 30 30 29 29 28 28 27 27 26 26 "
        "25 "
    ),
    # 240 V, Super Rapid² Plus, power 0..100 %
    (240, 2): _ints(
        "100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 "
        "100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 100 "
        "100 100 100 100 100 100 100 100 100 98 97 95 93 91 88 88 87 85 84 82 "
        "80 79 77 74 74 74 74 71 70 69 68 68 66 65 62 62 62 60 59 58 "
        "57 57 56 55 55 53 52 51 50 50 49 48 47 46 46 45 44 43 42 42 "
        "41 "
    ),
    # 115 V, Rapid², power 0..100 %
    (115, 0): _ints(
        "36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 36 "
        "36 36 36 36 36 36 36 36 36 36 36 35 35 34 33 32 32 31 30 29 "
        "28 28 27 26 26 25 25 24 24 23 23 22 22 21 21 21 20 20 19 19 "
        "19 18 18 18 18 17 17 17 16 16 16 16 16 15 15 15 15 14 14 14 "
        "14 14 13 13 13 13 13 12 12 12 12 12 12 12 12 11 11 11 11 11 "
        "11 "
    ),
    # 115 V, Super Rapid², power 0..100 %
    (115, 1): _ints(
        "60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 "
        "60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 59 57 "
        "55 54 53 52 51 50 49 47 46 45 44 43 42 42 41 40 40 39 38 38 "
        "37 36 36 35 35 34 34 33 33 32 32 31 31 30 30 29 29 28 28 28 "
        "27 27 27 26 26 26 26 25 25 25 24 24 24 24 23 23 23 22 22 22 "
        "22 "
    ),
    # 115 V, Super Rapid² Plus, power 0..100 %
    (115, 2): _ints(
        "60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 "
        "60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 60 "
        "60 60 60 60 60 60 60 60 60 60 58 56 56 54 53 52 51 50 49 48 "
        "47 46 46 45 44 43 43 42 41 40 40 39 39 38 37 37 36 36 35 35 "
        "34 34 33 33 33 32 32 31 31 30 30 30 29 29 28 28 28 27 27 27 "
        "25 "
    ),
}

_STATUS_BITS = (
    "standby",
    "armed",
    "ready",
    "coil_present",
    "replace_coil",
    "error",
    "error_type",
    "remote",
)


def parse_instr(byte: int) -> dict[str, bool]:
    """Decode the instrument status byte into named flags."""
    return {name: bool(byte >> k & 1) for k, name in enumerate(_STATUS_BITS)}


class _Magstim(Stimulator):
    """Shared driver for the Magstim family (protocol above).

    Parameters
    ----------
    port : str
        Serial device, e.g. ``"/dev/ttyUSB0"`` or ``"COM3"``.
    trigger : {"serial", "rts"}
        ``"serial"`` fires with the ``EH`` command; ``"rts"`` fires with QuickFire
        (a TTL edge on RTS), which needs a port with modem-control lines.
    timeout_s : float
        Reply timeout per command in s.
    arm_timeout_s : float
        How long ``arm`` waits for the ready bit, s (the units need about 1 s).
    keepalive_armed_s, keepalive_disarmed_s : float
        Keep-alive period while armed / disarmed, s.
    quickfire_width_s : float
        How long RTS is held active for QuickFire, s.
    """

    intensity_range_pct: ClassVar[tuple[float, float]] = (0.0, 100.0)
    #: Length of the ``J@``/``\\@`` parameter reply, bytes.
    _param_cmd: ClassVar[str] = "J@"
    _param_len: ClassVar[int] = 12
    _supports_train: ClassVar[bool] = False

    def __init__(
        self,
        port: str,
        trigger: str = "serial",
        timeout_s: float = 0.3,
        arm_timeout_s: float = 3.0,
        keepalive_armed_s: float = 0.5,
        keepalive_disarmed_s: float = 5.0,
        quickfire_width_s: float = 0.002,
    ) -> None:
        if trigger not in ("serial", "rts"):
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"{self.name}: trigger must be 'serial' or 'rts', got {trigger!r}",
            )
        self.port = port
        self.trigger = trigger
        self.timeout_s = float(timeout_s)
        self.arm_timeout_s = float(arm_timeout_s)
        self.keepalive_armed_s = float(keepalive_armed_s)
        self.keepalive_disarmed_s = float(keepalive_disarmed_s)
        self.quickfire_width_s = float(quickfire_width_s)
        self._ser: serial.Serial | None = None
        self._io = threading.Lock()
        self._armed = False
        self._intensity = 0.0
        self._fault: str | None = None
        self._fault_code: ErrorCode | None = None
        self._last_io = 0.0
        self._ka_stop = threading.Event()
        self._ka_kick = threading.Event()
        self._ka_thread: threading.Thread | None = None
        self._train: TrainSpec | None = None
        self._train_end = float("-inf")  # LSL time of the last pulse of the last train fired

    # -- transport -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ser is not None

    def _set_fault(self, code: ErrorCode, text: str) -> None:
        if self._fault is None:
            logger.error("%s: %s", self.name, text)
        self._fault, self._fault_code = text, code

    def _transact(self, command: str, reply_len: int) -> bytes:
        """Send ``command`` (+ checksum); return the validated reply (including checksum)."""
        ser = require_port(self.name, self._ser)
        with self._io:
            try:
                ser.reset_input_buffer()
                ser.write(encode(command))
                # Error replies are 2-3 bytes; a status byte can never be mistaken for the
                # "?"/"S" marker while under remote control, because bit 7 (remote) is set
                # and "?" = 0x3F, "S" = 0x53 have it clear.
                reply = ser.read(1)
                if reply and reply != b"?":
                    reply += ser.read(1)
                    if reply[1:2] in (b"?", b"S"):
                        reply += ser.read(1)
                    elif len(reply) == 2:
                        reply += ser.read(max(reply_len - 2, 0))
                elif reply == b"?":
                    reply += ser.read(1)
            except IO_ERRORS as exc:
                self._set_fault(ErrorCode.PORT_LOST, f"serial port {self.port} failed: {exc}")
                raise PortError(
                    ErrorCode.PORT_LOST, f"{self.name}: serial port {self.port} failed: {exc}"
                ) from exc
            self._last_io = pylsl.local_clock()
        self._ka_kick.set()
        cmd = command[:1].encode()
        if not reply:
            raise ProtocolError(
                ErrorCode.NO_REPLY,
                f"{self.name}: no reply to {command!r} within {self.timeout_s:g} s",
            )
        if reply[:1] == b"?" and len(reply) == 2:
            raise ProtocolError(
                ErrorCode.DEVICE_REJECTED, f"{self.name}: device did not recognise {command!r}"
            )
        if len(reply) == 3 and reply[1:2] in (b"?", b"S") and checksum(reply[:2]) == reply[2]:
            what = "invalid data" if reply[1:2] == b"?" else "conflicts with the current state"
            raise ProtocolError(
                ErrorCode.DEVICE_REJECTED, f"{self.name}: {command!r} rejected: {what}"
            )
        if len(reply) != reply_len:
            raise ProtocolError(
                ErrorCode.GARBLED_REPLY,
                f"{self.name}: reply to {command!r} has {len(reply)} bytes; "
                f"expected {reply_len}: {reply!r}",
            )
        if checksum(reply[:-1]) != reply[-1]:
            raise ProtocolError(
                ErrorCode.GARBLED_REPLY,
                f"{self.name}: reply to {command!r} has checksum 0x{reply[-1]:02x}; "
                f"expected 0x{checksum(reply[:-1]):02x}: {reply!r}",
            )
        if reply[:1] != cmd:
            raise ProtocolError(
                ErrorCode.GARBLED_REPLY,
                f"{self.name}: reply to {command!r} starts with {reply[:1]!r}; expected {cmd!r}",
            )
        return reply

    def _instr(self) -> dict[str, bool]:
        return parse_instr(self._transact("Q@", 3)[1])

    # -- keep-alive ------------------------------------------------------------------------
    def _keepalive(self) -> None:
        while not self._ka_stop.is_set():
            period = self.keepalive_armed_s if self._armed else self.keepalive_disarmed_s
            due = self._last_io + period
            remaining = due - pylsl.local_clock()
            if remaining > 0:
                # Woken early by any command (which resets the timer) or by close().
                self._ka_kick.wait(remaining)
                self._ka_kick.clear()
                continue
            try:
                instr = self._instr()
            except DeviceError as exc:
                self._set_fault(ErrorCode.KEEPALIVE_LOST, f"keep-alive lost: {exc.message}")
                self._armed = False
                return
            if self._armed and not instr["armed"]:
                self._set_fault(
                    ErrorCode.KEEPALIVE_LOST,
                    "device disarmed itself (remote-control timeout or coil protection)",
                )
                self._armed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        refuse_if_connected(self.name, self._ser, self.port)
        ser = open_serial_port(self.name, self.port, 9600, self.timeout_s)
        if self.trigger == "rts":
            try:
                ser.rts = False
            except IO_ERRORS as exc:
                close_serial_port(ser)
                raise PortError(
                    ErrorCode.UNSUPPORTED,
                    f"{self.name}: port {self.port!r} has no RTS modem-control line for QuickFire "
                    f"({exc}); use trigger='serial' or a real UART",
                ) from exc
        self._ser = ser
        self._fault = self._fault_code = None
        try:
            instr = self._instr()
            if not instr["remote"]:
                raise ProtocolError(
                    ErrorCode.DEVICE_REJECTED, f"{self.name}: remote control was not granted"
                )
            self._intensity = self._read_intensity()
        except DeviceError:
            self._ser = None
            close_serial_port(ser)
            raise
        self._armed = instr["armed"]
        self._ka_stop.clear()
        self._ka_thread = threading.Thread(
            target=self._keepalive, name=f"{self.name}-keepalive", daemon=True
        )
        self._ka_thread.start()

    def close(self) -> None:
        ser = self._ser
        if ser is None:
            return
        self._ka_stop.set()
        self._ka_kick.set()
        if self._ka_thread is not None:
            self._ka_thread.join(timeout=2.0)
            self._ka_thread = None
        for cmd in ("EA", "R@"):
            try:
                self._transact(cmd, 3)
            except DeviceError as exc:
                logger.warning("%s: %s during close failed: %s", self.name, cmd, exc.message)
        self._armed = False
        self._ser = None
        close_serial_port(ser)

    def _check_usable(self) -> None:
        require_usable(
            self.name, self._ser, self._fault, self._fault_code or ErrorCode.KEEPALIVE_LOST
        )

    def arm(self) -> None:
        self._check_usable()
        instr = self._instr()
        if not instr["armed"]:
            self._transact("EB", 3)
        self._armed = True
        deadline = pylsl.local_clock() + self.arm_timeout_s
        while pylsl.local_clock() < deadline:
            instr = self._instr()
            if instr["ready"]:
                return
            if not instr["armed"]:
                break
            wait_until(pylsl.local_clock() + 0.02)
        self._safe_disarm()
        raise DeviceError(
            ErrorCode.NOT_READY,
            f"{self.name}: not ready {self.arm_timeout_s:g} s after arming "
            f"(status {instr}); disarmed",
        )

    def _safe_disarm(self) -> None:
        try:
            self._transact("EA", 3)
        except DeviceError as exc:
            logger.error("%s: disarm failed: %s", self.name, exc.message)
        self._armed = False

    def disarm(self) -> None:
        require_port(self.name, self._ser)
        self._armed = False
        self._transact("EA", 3)

    def _read_intensity(self) -> float:
        return float(
            int(
                self._transact(self._param_cmd, self._param_len)[
                    self._power_at : self._power_at + 3
                ]
            )
        )

    _power_at: ClassVar[int] = 2

    def set_intensity(self, intensity_pct: float) -> None:
        power = check_whole_percent(self.name, intensity_pct, *self.intensity_range_pct)
        self._check_usable()
        self._transact(f"@{power:03d}", 3)
        self._intensity = float(intensity_pct)

    def _trigger(self, at: float | None) -> float:
        self._check_usable()
        require_armed(self.name, self._armed)
        if at is not None:
            wait_until(float(at))
        if self.trigger == "rts":
            assert self._ser is not None
            try:
                t = pylsl.local_clock()
                self._ser.rts = True
                wait_until(t + self.quickfire_width_s)
                self._ser.rts = False
            except IO_ERRORS as exc:
                self._set_fault(ErrorCode.PORT_LOST, f"QuickFire on {self.port} failed: {exc}")
                raise PortError(
                    ErrorCode.PORT_LOST, f"{self.name}: QuickFire failed: {exc}"
                ) from exc
            return t
        t = pylsl.local_clock()
        self._transact("EH", 3)
        return t

    def fire(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        return self._trigger(at)

    def configure_train(self, train: TrainSpec) -> None:
        train.validate()
        raise DeviceError(ErrorCode.UNSUPPORTED, f"{self.name}: no repetitive trains; use a Rapid²")

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        raise DeviceError(ErrorCode.UNSUPPORTED, f"{self.name}: no repetitive trains; use a Rapid²")

    def coil_temperature_c(self) -> float:
        """Hotter of the two coil-winding temperatures, °C (``F@``)."""
        reply = self._transact("F@", 9)
        return max(int(reply[2:5]) / 10.0, int(reply[5:8]) / 10.0)

    def status(self) -> StimulatorStatus:
        if self._ser is None:
            return StimulatorStatus(False, False, False, False, None, self._intensity, self._fault)
        try:
            instr = self._instr()
            temp = self.coil_temperature_c()
        except DeviceError as exc:
            return StimulatorStatus(
                True, False, False, False, None, self._intensity, self._fault or exc.message
            )
        if self._armed and not instr["armed"]:
            self._set_fault(
                ErrorCode.KEEPALIVE_LOST,
                "device disarmed itself (remote-control timeout or coil protection)",
            )
            self._armed = False
        error = self._fault
        if error is None and instr["error"]:
            error = "device reports an error"
        if error is None and instr["replace_coil"]:
            error = "device asks to replace the coil (over temperature)"
        return StimulatorStatus(
            connected=True,
            armed=instr["armed"],
            ready=instr["ready"],
            coil_present=instr["coil_present"],
            coil_temperature_c=temp,
            intensity_pct=self._intensity,
            error=error,
            train_running=instr["armed"] and pylsl.local_clock() <= self._train_end,
        )


class Magstim200(_Magstim):
    """Magstim 200² monophasic single-pulse stimulator."""

    name: ClassVar[str] = "magstim-200"
    description: ClassVar[str] = "Magstim 200² over RS-232 (9600 8N1), optional QuickFire on RTS"


class MagstimBiStim(_Magstim):
    """Magstim BiStim² (two 200² units); ``set_intensity`` sets power A."""

    name: ClassVar[str] = "magstim-bistim"
    description: ClassVar[str] = "Magstim BiStim² over RS-232 (9600 8N1), optional QuickFire on RTS"


class MagstimRapid(_Magstim):
    """Magstim Rapid² repetitive stimulator.

    Extra parameters
    ----------------
    voltage : {240, 115}
        Mains voltage of the unit (the maximum rate depends on it).
    variant : {0, 1, 2}
        0 Rapid², 1 Super Rapid², 2 Super Rapid² Plus.
    """

    name: ClassVar[str] = "magstim-rapid"
    description: ClassVar[str] = (
        "Magstim Rapid² over RS-232 (9600 8N1): trains, power-dependent rate limit"
    )
    _param_cmd: ClassVar[str] = "\\@"
    _param_len: ClassVar[int] = 24
    _power_at: ClassVar[int] = 3
    _supports_train: ClassVar[bool] = True

    def __init__(self, port: str, voltage: int = 240, variant: int = 0, **kwargs: object) -> None:
        if (voltage, variant) not in RAPID_MAX_FREQUENCY_HZ:
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"{self.name}: (voltage, variant) must be one of {sorted(RAPID_MAX_FREQUENCY_HZ)}, "
                f"got {(voltage, variant)}",
            )
        super().__init__(port, **kwargs)  # type: ignore[arg-type]
        self.voltage, self.variant = voltage, variant

    def max_frequency_hz(self, intensity_pct: float) -> float:
        """Maximum repetition rate at this power, Hz (manufacturer table; see module doc)."""
        table = RAPID_MAX_FREQUENCY_HZ[(self.voltage, self.variant)]
        k = min(max(int(-(-intensity_pct // 1)), 0), 100)  # round power up: stricter
        return float(table[k])

    def configure_train(self, train: TrainSpec) -> None:
        train.validate()
        self._check_usable()
        tenths = round(train.frequency_hz * 10)
        if abs(tenths / 10 - train.frequency_hz) > 1e-9 or not (1 <= tenths <= 9999):
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"{self.name}: frequency must be 0.1..999.9 Hz in 0.1 Hz steps, "
                f"got {train.frequency_hz!r}",
            )
        limit = self.max_frequency_hz(self._intensity)
        if train.frequency_hz > limit:
            raise DeviceError(
                ErrorCode.DEVICE_LIMIT,
                f"{self.name}: {train.frequency_hz:g} Hz at power {self._intensity:g} %; "
                f"the unit allows <= {limit:g} Hz",
            )
        # duration = n / f s = 100 n / tenths in 0.1 s units, rounded up
        duration_tenths = max(1, -(-train.n_pulses * 100 // tenths))
        self._transact(f"B{tenths:04d}", 4)
        self._transact(f"D{train.n_pulses:05d}", 4)
        self._transact(f"[{min(duration_tenths, 9999):04d}", 4)
        self._train = train

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        if self._train is None:
            raise DeviceError(ErrorCode.BAD_ARGUMENT, f"{self.name}: no train configured")
        t0 = self._trigger(at)
        self._train_end = t0 + (self._train.n_pulses - 1) / self._train.frequency_hz
        return t0
