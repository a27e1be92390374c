"""MagVenture MagPro (R30/X100 with MagOption) over its serial protocol.

Protocol as reimplemented publicly by the MAGIC toolbox (Saatlou, McNair, Rogasch et al.
2018, Brain Stimulation 11:1189, github.com/nigelrogasch/MAGIC) and its Python port
MAGICPy (Numssen, ``magicpy/stimulator/magventure.py``); no code is copied:

- RS-232, 38400 baud, 8N1, on the stimulator's COM2 port.
- Frame: ``0xFE, length, payload..., crc, 0xFF`` where ``length`` counts the payload
  bytes and ``crc`` is CRC-8/Dallas-Maxim (polynomial x^8 + x^5 + x^4 + 1, reflected
  0x8C, initial value 0, no final XOR) over the payload only. Check value of
  CRC-8/MAXIM over ASCII "123456789" is 0xA1 (Williams' CRC catalogue).
- Payload byte 0 is the command id: 0x00 status, 0x01 amplitude (% MSO, A [and B]),
  0x02 enable (0x01) / disable (0x00), 0x03 single pulse (0x01), 0x04 start train,
  0x06 train parameters (repetition rate in 0.1 Hz, pulses per train, number of trains,
  inter-train interval in 0.1 s; each 16-bit big-endian), 0x05 Status2 (the status plus
  amplitude factors, page and, in its last payload byte, whether a train runs).
- No command stops a train: disable (0x02 0x00) is the remote-control stop, and a
  disabled unit cannot discharge, so it ends a running train.
- Status reply payload: ``[0x00, mode/status byte, serial (3 bytes), temperature °C,
  coil type, amplitude A, amplitude B]``. In the mode/status byte bits 7-5 are the
  model, bit 4 is "enabled", bits 3-2 the waveform, bits 1-0 the mode. Replies to other
  commands carry the same byte as their 4th payload byte.
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

START, END = 0xFE, 0xFF
CMD_STATUS, CMD_AMPLITUDE, CMD_ENABLE, CMD_FIRE, CMD_TRAIN_START, CMD_TRAIN_SET = 0, 1, 2, 3, 4, 6
#: Status2: the status plus page and whether a train (or protocol) runs (MAGIC `getStatus2`).
CMD_STATUS2 = 5
ENABLED_BIT = 1 << 4


def crc8_maxim(data: bytes) -> int:
    """CRC-8/Dallas-Maxim (reflected polynomial 0x8C, init 0x00, no final XOR)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def frame(payload: bytes) -> bytes:
    """Wrap a payload as ``FE, len, payload, crc, FF``."""
    if not 1 <= len(payload) <= 0xFD:
        raise ValueError(f"MagPro payload must be 1..253 bytes, got {len(payload)}")
    return bytes([START, len(payload)]) + payload + bytes([crc8_maxim(payload), END])


def read_frame(ser: serial.Serial, name: str) -> bytes:
    """Read one frame from ``ser``; return its payload or raise ProtocolError."""
    skipped = b""
    while True:
        b = ser.read(1)
        if not b:
            if skipped:
                raise ProtocolError(
                    ErrorCode.GARBLED_REPLY,
                    f"{name}: bytes without a frame start 0xFE: {skipped!r}",
                )
            raise ProtocolError(ErrorCode.NO_REPLY, f"{name}: no reply within the timeout")
        if b[0] == START:
            break
        skipped += b
    n = ser.read(1)
    if not n:
        raise ProtocolError(ErrorCode.GARBLED_REPLY, f"{name}: frame truncated after 0xFE")
    rest = ser.read(n[0] + 2)
    if len(rest) != n[0] + 2:
        raise ProtocolError(
            ErrorCode.GARBLED_REPLY, f"{name}: frame of length {n[0]} truncated: {rest!r}"
        )
    payload, crc, end = rest[:-2], rest[-2], rest[-1]
    if end != END:
        raise ProtocolError(
            ErrorCode.GARBLED_REPLY, f"{name}: frame ends with 0x{end:02x}; expected 0xff"
        )
    if crc8_maxim(payload) != crc:
        raise ProtocolError(
            ErrorCode.GARBLED_REPLY,
            f"{name}: frame CRC 0x{crc:02x}; expected 0x{crc8_maxim(payload):02x} for {payload!r}",
        )
    return payload


class MagProStimulator(Stimulator):
    """MagVenture MagPro driver.

    Parameters
    ----------
    port : str
        Serial device of the stimulator's COM2.
    timeout_s : float
        Reply timeout per command, s.
    arm_timeout_s : float
        How long ``arm`` waits for the enabled bit, s.
    """

    name: ClassVar[str] = "magventure-magpro"
    description: ClassVar[str] = "MagVenture MagPro over RS-232 (38400 8N1, CRC-8/Maxim frames)"

    def __init__(self, port: str, timeout_s: float = 0.3, arm_timeout_s: float = 3.0) -> None:
        self.port = port
        self.timeout_s = float(timeout_s)
        self.arm_timeout_s = float(arm_timeout_s)
        self._ser: serial.Serial | None = None
        self._io = threading.Lock()
        self._armed = False
        self._intensity = 0.0
        self._train: TrainSpec | None = None
        self._fault: str | None = None
        self._status2 = True  # cleared if the unit does not answer Status2 (then never asked)

    @property
    def connected(self) -> bool:
        return self._ser is not None

    def _transact(self, payload: bytes) -> bytes:
        ser = require_port(self.name, self._ser)
        with self._io:
            try:
                ser.reset_input_buffer()
                ser.write(frame(payload))
                reply = read_frame(ser, self.name)
            except IO_ERRORS as exc:
                self._fault = f"serial port {self.port} failed: {exc}"
                raise PortError(ErrorCode.PORT_LOST, f"{self.name}: {self._fault}") from exc
        if reply[0] != payload[0]:
            raise ProtocolError(
                ErrorCode.GARBLED_REPLY,
                f"{self.name}: reply id 0x{reply[0]:02x} to command 0x{payload[0]:02x}",
            )
        return reply

    def _status_raw(self) -> bytes:
        reply = self._transact(bytes([CMD_STATUS]))
        if len(reply) != 9:
            raise ProtocolError(
                ErrorCode.GARBLED_REPLY,
                f"{self.name}: status payload has {len(reply)} bytes; expected 9",
            )
        return reply

    def connect(self) -> None:
        refuse_if_connected(self.name, self._ser, self.port)
        ser = open_serial_port(self.name, self.port, 38400, self.timeout_s)
        self._ser = ser
        self._fault = None
        try:
            st = self._status_raw()
        except DeviceError:
            self._ser = None
            close_serial_port(ser)
            raise
        self._armed = bool(st[1] & ENABLED_BIT)
        self._intensity = float(st[7])

    def close(self) -> None:
        ser = self._ser
        if ser is None:
            return
        try:
            self._transact(bytes([CMD_ENABLE, 0]))
        except DeviceError as exc:
            logger.warning("%s: disable during close failed: %s", self.name, exc.message)
        self._armed = False
        self._ser = None
        close_serial_port(ser)

    def _check_usable(self) -> None:
        require_usable(self.name, self._ser, self._fault, ErrorCode.PORT_LOST)

    def arm(self) -> None:
        self._check_usable()
        self._transact(bytes([CMD_ENABLE, 1]))
        self._armed = True
        deadline = pylsl.local_clock() + self.arm_timeout_s
        while pylsl.local_clock() < deadline:
            if self._status_raw()[1] & ENABLED_BIT:
                return
            wait_until(pylsl.local_clock() + 0.02)
        self.disarm()
        raise DeviceError(
            ErrorCode.NOT_READY, f"{self.name}: not enabled {self.arm_timeout_s:g} s after arming"
        )

    def disarm(self) -> None:
        require_port(self.name, self._ser)
        self._armed = False
        self._transact(bytes([CMD_ENABLE, 0]))

    def set_intensity(self, intensity_pct: float) -> None:
        amplitude = check_whole_percent(self.name, intensity_pct, *self.intensity_range_pct)
        self._check_usable()
        reply = self._transact(bytes([CMD_AMPLITUDE, amplitude]))
        if len(reply) < 2 or reply[1] != amplitude:
            raise ProtocolError(
                ErrorCode.DEVICE_REJECTED,
                f"{self.name}: amplitude {intensity_pct!r} requested; "
                f"device reports {reply[1:2]!r}",
            )
        self._intensity = float(intensity_pct)

    def _trigger(self, cmd: bytes, at: float | None) -> float:
        self._check_usable()
        require_armed(self.name, self._armed)
        if at is not None:
            wait_until(float(at))
        t = pylsl.local_clock()
        self._transact(cmd)
        return t

    def fire(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        return self._trigger(bytes([CMD_FIRE, 1]), at)

    def configure_train(self, train: TrainSpec) -> None:
        train.validate()
        self._check_usable()
        rate = round(train.frequency_hz * 10)
        if abs(rate / 10 - train.frequency_hz) > 1e-9 or not 1 <= rate <= 1000:
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT,
                f"{self.name}: repetition rate must be 0.1..100 Hz in 0.1 Hz steps, "
                f"got {train.frequency_hz!r}",
            )
        if train.n_pulses > 0xFFFF:
            raise DeviceError(
                ErrorCode.BAD_ARGUMENT, f"{self.name}: n_pulses <= 65535, got {train.n_pulses}"
            )
        body = bytes([CMD_TRAIN_SET]) + b"".join(
            v.to_bytes(2, "big") for v in (rate, train.n_pulses, 1, 10)
        )
        self._transact(body)
        self._train = train

    def fire_train(self, at: float | None = None, *, site: str = "", reason: str = "") -> float:
        if self._train is None:
            raise DeviceError(ErrorCode.BAD_ARGUMENT, f"{self.name}: no train configured")
        return self._trigger(bytes([CMD_TRAIN_START]), at)

    def status(self) -> StimulatorStatus:
        if self._ser is None:
            return StimulatorStatus(False, False, False, False, None, self._intensity, self._fault)
        try:
            st = self._status_raw()
            train_running = self._train_running()
        except DeviceError as exc:
            return StimulatorStatus(
                True, False, False, False, None, self._intensity, self._fault or exc.message
            )
        enabled = bool(st[1] & ENABLED_BIT)
        return StimulatorStatus(
            connected=True,
            armed=enabled,
            ready=enabled,
            coil_present=st[6] != 0,
            coil_temperature_c=float(st[5]),
            intensity_pct=float(st[7]),
            error=self._fault,
            train_running=train_running,
        )

    def _train_running(self) -> bool | None:
        """Status2 (0x05): its last payload byte says whether a train or protocol runs.

        Status2 comes from MAGIC, not from a vendor document: a unit that does not answer
        it (no reply, or another layout) is asked once, logged, and reported as None
        ("cannot tell") from then on, so a status poll never waits for its timeout again.
        """
        if not self._status2:
            return None
        try:
            reply = self._transact(bytes([CMD_STATUS2]))
        except PortError:
            raise
        except ProtocolError as exc:
            reply, why = b"", exc.message
        else:
            why = f"Status2 payload has {len(reply)} bytes; expected 15"
        if len(reply) != 15:
            self._status2 = False
            logger.warning("%s: %s; train state not reported", self.name, why)
            return None
        return reply[14] != 0
