"""A protocol emulator on a pseudo-terminal, so real driver code talks to a real tty.

As in BrainFlow's CI emulators, the emulator owns the pty master and speaks the device
protocol there; the driver opens the slave path (:attr:`PtyEmulator.port`) with pyserial
exactly as it would open ``/dev/ttyUSB0``. A single thread waits in ``select`` on the
master and a wake-up pipe with a short timeout (it also advances the device model:
arming time, keep-alive timeout, coil cooling). Modem-control lines (RTS/DTR) do not
exist on a Linux pty: ``TIOCMBIS``/``TIOCMGET`` fail with ENOTTY, so QuickFire cannot be
observed here (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import tty

import pylsl

logger = logging.getLogger("stimloop.devices")


class PtyEmulator:
    """Base class: subclasses implement :meth:`feed` (bytes in) and may override :meth:`tick`.

    Attributes
    ----------
    port : str
        Path of the pty slave; open it with pyserial.
    received : list of (float, bytes)
        LSL time at which each complete, checksum-valid command arrived, and the command.
    checksum_errors : int
        Commands rejected for a bad checksum or frame.
    """

    tick_s = 0.01

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self.received: list[tuple[float, bytes]] = []
        self.checksum_errors = 0
        self.silent = False
        self.garble_next = False
        self._thread: threading.Thread | None = None
        self._unplugged = False

    def start(self) -> PtyEmulator:
        """Start the emulator thread; returns self."""
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}", daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> PtyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        """Send bytes to the driver, unless silenced; garble once if asked to."""
        if self.silent or self._unplugged:
            return
        if self.garble_next and data:
            self.garble_next = False
            data = bytes([data[0]]) + bytes([(data[1] ^ 0x5A) if len(data) > 1 else 0]) + data[2:]
        os.write(self._master, data)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    wait_s = self.wait_s(pylsl.local_clock())
                ready, _, _ = select.select([self._master, self._wake_r], [], [], wait_s)
            except (OSError, ValueError):
                return
            now = pylsl.local_clock()
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
                if data:
                    with self._lock:
                        self.feed(data, now)
            with self._lock:
                self.tick(pylsl.local_clock())

    def feed(self, data: bytes, now: float) -> None:
        """Consume bytes written by the driver (subclasses parse frames here)."""
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Advance the device model (called at least every ``tick_s``)."""

    def wait_s(self, now: float) -> float:
        """How long the thread may wait for bytes before :meth:`tick`, s.

        ``tick_s`` by default; a model with a timed event (the next pulse of a running
        train) returns less, so the event happens on time rather than up to a tick late.
        """
        return self.tick_s

    def unplug(self) -> None:
        """Simulate a vanished port: stop answering and hang up the pty."""
        self._unplugged = True
        self.close()

    def close(self) -> None:
        """Stop the thread and close every fd. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
