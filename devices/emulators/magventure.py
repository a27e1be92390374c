"""MagVenture MagPro protocol emulator on a pty (frames and CRC as documented in
:mod:`stimloop.devices.stimulators.magventure`).

Frames with a bad CRC, a bad end byte or an unknown command are counted in
``checksum_errors`` and not answered (a real unit ignores them; the driver then
reports NO_REPLY). Models the charging time until the enabled bit and coil heating.

A train runs on the unit's own clock: command 0x04 delivers the first pulse at once and the
others at ``k / rate``, train after train (``n_trains`` trains, ``iti`` 0.1 s from the last
pulse of one to the first of the next, as MAGICPy's ``set_train`` documents), each pulse
recorded in :attr:`MagProEmulator.pulses` at its time. The public descriptions (MAGIC's
``magventure.m``, MAGICPy's ``magventure.py``) define no "stop train" command; the
remote-control stop is disable, 0x02 0x00 (MAGIC ``disarm``), after which the unit cannot
discharge. So disable ends a running train: no pulse due after it arrived is delivered.
Status2 (0x05) reports whether a train runs, in the payload layout MAGIC's reply parser
reads: ``[0x05, mode/status, serial (3), temperature, coil type, amplitude A, B, original
amplitude A, B, amplitude factor A, B, page, train/protocol running]`` (15 bytes, the
19-byte frame MAGIC waits for). MAGIC's Status2 branch reads "running" from the page byte's
index; its page message (id 0x08) puts the running flag in the byte after the page, which
is the layout used here.
"""

from __future__ import annotations

from stimloop.devices.emulators.pty import PtyEmulator
from stimloop.devices.stimulators.magventure import (
    CMD_STATUS2,
    ENABLED_BIT,
    END,
    START,
    crc8_maxim,
    frame,
)


class MagProEmulator(PtyEmulator):
    """Emulated MagPro R30 with MagOption.

    Parameters
    ----------
    arm_time_s : float
        Time from enable until the enabled bit reads back, s.
    heat_c_per_pulse : float
        Coil heating per pulse at 100 % amplitude, °C.
    status2 : bool
        Answer Status2 (0x05); False emulates a unit that ignores it.
    """

    MODEL_R30 = 0
    PAGE_TRAIN = 2

    def __init__(
        self, arm_time_s: float = 0.1, heat_c_per_pulse: float = 0.05, status2: bool = True
    ) -> None:
        super().__init__()
        self.status2 = status2  # False: a unit that ignores Status2 (0x05)
        self.arm_time_s = arm_time_s
        self.heat_c_per_pulse = heat_c_per_pulse
        self.enabled = False
        self.enabled_at = 0.0
        self.amplitude = 30
        self.coil_type = 60  # a figure-of-eight coil id; 0 would mean "no coil"
        self.coil_temp_c = 24.0
        self.train = (10, 1, 1, 10)
        #: Every delivered pulse: (LSL time in s, amplitude in % MSO).
        self.pulses: list[tuple[float, int]] = []
        self.events: list[tuple[float, str]] = []
        self._due: list[float] = []  # LSL times of the running train's pulses still to come
        self._buf = b""
        self._buf_t = 0.0

    def _status_byte(self, now: float) -> int:
        charged = self.enabled and now >= self.enabled_at + self.arm_time_s
        return (self.MODEL_R30 << 5) | (ENABLED_BIT if charged else 0) | (1 << 2)

    @property
    def train_running(self) -> bool:
        """True while a train has pulses still to deliver."""
        return bool(self._due)

    def _pulse(self, t: float) -> None:
        self.pulses.append((t, self.amplitude))
        self.coil_temp_c += self.heat_c_per_pulse * (self.amplitude / 100.0) ** 2

    def _advance(self, now: float) -> None:
        """Deliver every pulse of the running train due by ``now``, at its own time."""
        while self._due and self._due[0] <= now:
            self._pulse(self._due.pop(0))

    def _start_train(self, now: float) -> None:
        rate, n, trains, iti = self.train
        times, t = [], now
        for _ in range(max(trains, 1)):
            times += [t + k * 10.0 / rate for k in range(n)]
            t = times[-1] + iti / 10.0
        self._pulse(times[0])
        self._due = times[1:]

    def wait_s(self, now: float) -> float:
        if self._due:
            return min(self.tick_s, max(self._due[0] - now, 0.0))
        return self.tick_s

    def tick(self, now: float) -> None:
        self._advance(now)
        if self._buf and now - self._buf_t > 0.1:
            self.checksum_errors += 1
            self._buf = b""

    def feed(self, data: bytes, now: float) -> None:
        # Pulses due before these bytes arrived happened before the command took effect.
        self._advance(now)
        if not self._buf:
            self._buf_t = now
        self._buf += data
        while self._buf:
            if self._buf[0] != START:
                self.checksum_errors += 1
                self._buf = self._buf[1:]
                continue
            if len(self._buf) < 2 or len(self._buf) < self._buf[1] + 4:
                return
            n = self._buf[1]
            raw, self._buf = self._buf[: n + 4], self._buf[n + 4 :]
            self._buf_t = now
            payload = raw[2 : 2 + n]
            if raw[-1] != END or crc8_maxim(payload) != raw[-2]:
                self.checksum_errors += 1
                continue
            self.received.append((now, payload))
            self._handle(payload, now)

    def _status2(self, now: float) -> bytes:
        temp = min(round(self.coil_temp_c), 255)
        a = self.amplitude
        body = [self._status_byte(now), 0, 0x12, 0x34, temp, self.coil_type, a, 0, a, 0]
        return bytes([CMD_STATUS2, *body, 100, 100, self.PAGE_TRAIN, int(bool(self._due))])

    def _send(self, payload: bytes) -> None:
        self.write(frame(payload))

    def _handle(self, p: bytes, now: float) -> None:
        cmd = p[0]
        if cmd == 0x00:
            temp = min(round(self.coil_temp_c), 255)
            return self._send(
                bytes(
                    [
                        0,
                        self._status_byte(now),
                        0,
                        0x12,
                        0x34,
                        temp,
                        self.coil_type,
                        self.amplitude,
                        0,
                    ]
                )
            )
        if cmd == 0x01 and len(p) >= 2:
            if p[1] <= 100:
                self.amplitude = p[1]
            return self._send(bytes([1, self.amplitude, 0, self._status_byte(now)]))
        if cmd == 0x02 and len(p) == 2:
            if p[1] == 1 and not self.enabled:
                self.enabled, self.enabled_at = True, now
            elif p[1] == 0:
                self.enabled = False
                if self._due:
                    self.events.append((now, "train_stopped: disable"))
                    self._due.clear()
            return self._send(bytes([2, 0, 0, self._status_byte(now)]))
        if cmd == CMD_STATUS2 and self.status2:
            return self._send(self._status2(now))
        if cmd in (0x03, 0x04):
            # Nothing is triggered while disabled, still charging, or discharging a train.
            if self._status_byte(now) & ENABLED_BIT and not self._due:
                if cmd == 0x04:
                    self._start_train(now)
                else:
                    self._pulse(now)
            return self._send(
                bytes([cmd, int(self.coil_temp_c), self.coil_type, self._status_byte(now)])
            )
        if cmd == 0x06 and len(p) == 9:
            vals = [int.from_bytes(p[k : k + 2], "big") for k in (1, 3, 5, 7)]
            if 1 <= vals[0] <= 1000:
                self.train = tuple(vals)  # type: ignore[assignment]
            return self._send(bytes([6, 0, 0, self._status_byte(now)]))
        self.checksum_errors += 1
