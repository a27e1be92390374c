"""MagVenture MagPro protocol emulator on a pty (frames and CRC as documented in
:mod:`stimloop.devices.stimulators.magventure`).

Frames with a bad CRC, a bad end byte or an unknown command are counted in
``checksum_errors`` and not answered (a real unit ignores them; the driver then
reports NO_REPLY). Models the charging time until the enabled bit and coil heating.
"""

from __future__ import annotations

from stimloop.devices.emulators.pty import PtyEmulator
from stimloop.devices.stimulators.magventure import ENABLED_BIT, END, START, crc8_maxim, frame


class MagProEmulator(PtyEmulator):
    """Emulated MagPro R30 with MagOption.

    Parameters
    ----------
    arm_time_s : float
        Time from enable until the enabled bit reads back, s.
    heat_c_per_pulse : float
        Coil heating per pulse at 100 % amplitude, °C.
    """

    MODEL_R30 = 0

    def __init__(self, arm_time_s: float = 0.1, heat_c_per_pulse: float = 0.05) -> None:
        super().__init__()
        self.arm_time_s = arm_time_s
        self.heat_c_per_pulse = heat_c_per_pulse
        self.enabled = False
        self.enabled_at = 0.0
        self.amplitude = 30
        self.coil_type = 60  # a figure-of-eight coil id; 0 would mean "no coil"
        self.coil_temp_c = 24.0
        self.train = (10, 1, 1, 10)
        self.pulses: list[tuple[float, int]] = []
        self._buf = b""
        self._buf_t = 0.0

    def _status_byte(self, now: float) -> int:
        charged = self.enabled and now >= self.enabled_at + self.arm_time_s
        return (self.MODEL_R30 << 5) | (ENABLED_BIT if charged else 0) | (1 << 2)

    def tick(self, now: float) -> None:
        if self._buf and now - self._buf_t > 0.1:
            self.checksum_errors += 1
            self._buf = b""

    def feed(self, data: bytes, now: float) -> None:
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
            return self._send(bytes([2, 0, 0, self._status_byte(now)]))
        if cmd in (0x03, 0x04):
            if self._status_byte(now) & ENABLED_BIT:
                rate, n, _, _ = self.train if cmd == 0x04 else (10, 1, 1, 10)
                for k in range(n):
                    self.pulses.append((now + k * 10.0 / rate, self.amplitude))
                self.coil_temp_c += n * self.heat_c_per_pulse * (self.amplitude / 100.0) ** 2
            return self._send(
                bytes([cmd, int(self.coil_temp_c), self.coil_type, self._status_byte(now)])
            )
        if cmd == 0x06 and len(p) == 9:
            vals = [int.from_bytes(p[k : k + 2], "big") for k in (1, 3, 5, 7)]
            if 1 <= vals[0] <= 1000:
                self.train = tuple(vals)  # type: ignore[assignment]
            return self._send(bytes([6, 0, 0, self._status_byte(now)]))
        self.checksum_errors += 1
