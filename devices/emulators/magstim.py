"""Magstim 200² / BiStim² / Rapid² protocol emulator on a pty.

Speaks the protocol documented in :mod:`stimloop.devices.stimulators.magstim`, checks
every checksum, and models what matters for safety testing: remote control and its
keep-alive timeout (armed units drop remote control and disarm after ``armed_timeout_s``
without contact), the arming (charging) time before the ready bit, coil heating per pulse
and cooling, the 40 °C coil cut-out, and the Rapid² rate limit by power level.

A Rapid² train runs on the unit's own clock: ``EH`` delivers its first pulse at once and
the others at ``k / frequency`` s after it, each recorded in :attr:`MagstimEmulator.pulses`
at its time. The public descriptions of the protocol (MagPy's ``magpy/magstim.py``; Boulay's
magstim_python README) define no separate "stop train" command: the remote-control way to
stop stimulation is disarm, ``EA`` (MagPy ``Magstim.disarm``), and a disarmed unit has no
charge to discharge (a pulse needs the armed and ready bits). So every path that disarms
the unit (``EA``, ``R@``, the keep-alive timeout, the coil cut-out) ends a running train:
no pulse due after the command arrived is delivered. The Rapid² status byte's bit 1,
named "train" by MagPy next to bit 3 "single-pulse mode", is set while a train runs.
"""

from __future__ import annotations

import math

from stimloop.devices.emulators.pty import PtyEmulator
from stimloop.devices.stimulators.magstim import RAPID_MAX_FREQUENCY_HZ, checksum

# Total command length (command char + data + checksum) by command character.
_LENGTHS = {
    "Q": 3, "R": 3, "J": 3, "F": 3, "E": 3, "I": 3, "\\": 3,
    "@": 5, "A": 5, "C": 5, "B": 6, "D": 7, "[": 6,
}  # fmt: skip


class MagstimEmulator(PtyEmulator):
    """Emulated Magstim unit.

    Parameters
    ----------
    model : {"200", "bistim", "rapid"}
    arm_time_s : float
        Charging time from ``EB`` to the ready bit, s.
    armed_timeout_s, disarmed_timeout_s : float
        Remote control is dropped after this long without a command while armed /
        disarmed (armed units disarm as well).
    heat_c_per_pulse : float
        Coil heating per pulse at 100 % power, °C (scales with power squared).
    cooling_tau_s : float
        Coil cooling time constant, s.
    """

    def __init__(
        self,
        model: str = "200",
        arm_time_s: float = 0.2,
        armed_timeout_s: float = 1.0,
        disarmed_timeout_s: float = 10.0,
        heat_c_per_pulse: float = 0.05,
        cooling_tau_s: float = 300.0,
        ambient_c: float = 22.0,
    ) -> None:
        super().__init__()
        if model not in ("200", "bistim", "rapid"):
            raise ValueError(f"model must be '200', 'bistim' or 'rapid', got {model!r}")
        self.model = model
        self.arm_time_s = arm_time_s
        self.armed_timeout_s = armed_timeout_s
        self.disarmed_timeout_s = disarmed_timeout_s
        self.heat_c_per_pulse = heat_c_per_pulse
        self.cooling_tau_s = cooling_tau_s
        self.ambient_c = ambient_c
        self.coil_temp_c = ambient_c
        self.coil_present = True
        self.remote = False
        self.armed = False
        self.armed_at = 0.0
        self.power_a = 30
        self.power_b = 30
        self.ipi = 10
        self.freq_tenths = 10
        self.n_pulses = 1
        self.duration_tenths = 10
        self.last_contact = 0.0
        #: Every delivered pulse: (LSL time in s, power in % MSO).
        self.pulses: list[tuple[float, int]] = []
        self.events: list[tuple[float, str]] = []
        self._due: list[float] = []  # LSL times of the running train's pulses still to come
        self._buf = b""
        self._buf_t = 0.0
        self._temp_t = 0.0

    # -- model ------------------------------------------------------------------------------
    def _ready(self, now: float) -> bool:
        return self.armed and now >= self.armed_at + self.arm_time_s

    def _instr(self, now: float) -> int:
        bits = [
            self.remote and not self.armed,
            self.armed,
            self._ready(now),
            self.coil_present,
            self.coil_temp_c > 40.0,
            False,
            False,
            self.remote,
        ]
        return sum(1 << k for k, b in enumerate(bits) if b)

    def _rapid(self) -> int:
        single = 1 << 3 if self.n_pulses <= 1 else 0
        return single | (1 << 1 if self._due else 0) | (1 << 4) | (1 << 5)

    @property
    def train_running(self) -> bool:
        """True while a train has pulses still to deliver."""
        return bool(self._due)

    def _pulse(self, t: float) -> None:
        self.pulses.append((t, self.power_a))
        self.coil_temp_c += self.heat_c_per_pulse * (self.power_a / 100.0) ** 2

    def _advance(self, now: float) -> None:
        """Deliver every pulse of the running train due by ``now``, at its own time."""
        while self._due and self._due[0] <= now:
            self._pulse(self._due.pop(0))

    def _disarm(self, now: float, why: str) -> None:
        """Disarm; a running train stops here (no pulse due after ``now`` is delivered)."""
        self.armed = False
        if self._due:
            self.events.append((now, f"train_stopped: {why}"))
            self._due.clear()

    def wait_s(self, now: float) -> float:
        if self._due:
            return min(self.tick_s, max(self._due[0] - now, 0.0))
        return self.tick_s

    def tick(self, now: float) -> None:
        self._advance(now)
        if self._temp_t:
            self.coil_temp_c = self.ambient_c + (self.coil_temp_c - self.ambient_c) * math.exp(
                -(now - self._temp_t) / self.cooling_tau_s
            )
        self._temp_t = now
        if self.remote:
            limit = self.armed_timeout_s if self.armed else self.disarmed_timeout_s
            if now - self.last_contact > limit:
                self.events.append((now, "keepalive_timeout"))
                self.remote = False
                self._disarm(now, "keepalive_timeout")
        if self.armed and self.coil_temp_c > 40.0:
            self.events.append((now, "coil_overtemperature"))
            self._disarm(now, "coil_overtemperature")
        if self._buf and now - self._buf_t > 0.1:  # inter-byte timeout: resynchronise
            self.checksum_errors += 1
            self._buf = b""

    def max_frequency_hz(self) -> float:
        return float(RAPID_MAX_FREQUENCY_HZ[(240, 0)][min(self.power_a, 100)])

    # -- protocol ---------------------------------------------------------------------------
    def _reply(self, payload: bytes) -> None:
        self.write(payload + bytes([checksum(payload)]))

    def feed(self, data: bytes, now: float) -> None:
        # Pulses due before these bytes arrived happened before the command took effect.
        self._advance(now)
        if not self._buf:
            self._buf_t = now
        self._buf += data
        while self._buf:
            cmd = chr(self._buf[0])
            n = _LENGTHS.get(cmd)
            if n is None:
                self._buf = b""
                self.checksum_errors += 1
                self._reply(b"?")
                return
            if len(self._buf) < n:
                return
            frame, self._buf = self._buf[:n], self._buf[n:]
            self._buf_t = now
            if checksum(frame[:-1]) != frame[-1]:
                self.checksum_errors += 1
                self._reply(b"?")
                continue
            self.received.append((now, frame[:-1]))
            self._handle(frame[:-1].decode("ascii", errors="replace"), now)

    def _handle(self, text: str, now: float) -> None:
        c, data = text[0], text[1:]
        cb = c.encode()
        if c == "Q":
            self.remote = True
            self.last_contact = now
            return self._reply(cb + bytes([self._instr(now)]))
        if c == "R":
            self.remote = False
            self._disarm(now, "R@")
            return self._reply(cb + bytes([self._instr(now)]))
        if not self.remote:
            return self._reply(cb + b"S")
        self.last_contact = now
        instr = bytes([self._instr(now)])
        rapid = self.model == "rapid"
        tail = instr + (bytes([self._rapid()]) if rapid and c in "B D[" else b"")
        if c == "J":
            return self._reply(
                cb + instr + f"{self.power_a:03d}{self.power_b:03d}{self.ipi:03d}".encode()
            )
        if c == "\\":
            if not rapid:
                return self._reply(b"?")
            body = (
                f"{self.power_a:03d}{self.freq_tenths:04d}{self.n_pulses:05d}"
                f"{self.duration_tenths:04d}0010"
            )
            return self._reply(cb + instr + bytes([self._rapid()]) + body.encode())
        if c == "F":
            t = min(round(self.coil_temp_c * 10), 999)
            return self._reply(cb + instr + f"{t:03d}{t:03d}".encode())
        if c == "I":
            return self._reply(cb + instr + b"\x00")
        if c in "@A":
            if not data.isdigit() or int(data) > 100:
                return self._reply(cb + b"?")
            if c == "@":
                self.power_a = int(data)
                if rapid and self.freq_tenths > 10 * self.max_frequency_hz():
                    # The unit lowers the frequency itself (MagPy documents this).
                    self.freq_tenths = int(10 * self.max_frequency_hz())
            else:
                self.power_b = int(data)
            return self._reply(cb + instr)
        if c == "C":
            self.ipi = int(data)
            return self._reply(cb + instr)
        if c in "BD[":
            if not rapid or not data.isdigit():
                return self._reply(cb + b"?")
            value = int(data)
            if c == "B":
                if value > 10 * self.max_frequency_hz() or value == 0:
                    return self._reply(cb + b"?")
                self.freq_tenths = value
            elif c == "D":
                self.n_pulses = value
            else:
                self.duration_tenths = value
            return self._reply(cb + tail)
        if c == "E":
            if data == "B":
                if self.armed or self.coil_temp_c > 40.0 or not self.coil_present:
                    return self._reply(cb + b"S")
                self.armed, self.armed_at = True, now
            elif data == "A":
                self._disarm(now, "EA")
            elif data == "H":
                # A trigger during a running train conflicts with the state: the unit is
                # still discharging the train.
                if not self._ready(now) or self._due:
                    return self._reply(cb + b"S")
                n = self.n_pulses if rapid else 1
                self._pulse(now)
                self._due = [now + k * 10.0 / self.freq_tenths for k in range(1, n)]
            else:
                return self._reply(cb + b"?")
            return self._reply(cb + bytes([self._instr(now)]))
        return self._reply(b"?")
