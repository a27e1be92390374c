"""Any BrainFlow board published as an LSL EEG stream (optional extra ``brainflow``).

Follows BrainFlow's own lifecycle (``prepare_session`` → ``start_stream`` →
``get_board_data`` → ``stop_stream`` → ``release_session``; Parfenov et al., BrainFlow
docs). A reader thread waits ``poll_s`` on an Event between pulls (no busy loop), converts
BrainFlow's Unix timestamps to the LSL clock, and pushes the EEG channels (µV) as one
chunk. With ``board_id = -1`` (SYNTHETIC_BOARD) it needs no hardware, which is what the
conformance tests use.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from typing import ClassVar

import numpy as np
import pylsl

from stimloop.devices.base import Source
from stimloop.devices.errors import ConfigError, DeviceError, ErrorCode

logger = logging.getLogger("stimloop.devices")


class BrainFlowSource(Source):
    """Publish a BrainFlow board's EEG channels on LSL.

    Parameters
    ----------
    board_id : int
        BrainFlow board id (``BoardIds``); -1 is the synthetic board.
    source_id : str, optional
        LSL source_id of the EEG outlet (default: unique).
    params : dict, optional
        Fields of ``BrainFlowInputParams`` (``serial_port``, ``ip_address``, ...).
    poll_s : float
        Interval between pulls from the board buffer, s.
    """

    name: ClassVar[str] = "brainflow"
    description: ClassVar[str] = "Any BrainFlow board (synthetic: board_id=-1) published as LSL EEG"

    def __init__(
        self,
        board_id: int = -1,
        source_id: str | None = None,
        params: dict | None = None,
        poll_s: float = 0.02,
    ) -> None:
        try:
            with warnings.catch_warnings():
                # brainflow imports the deprecated pkg_resources; not our warning to fix.
                warnings.simplefilter("ignore")
                from brainflow.board_shim import BoardShim, BrainFlowInputParams
        except ImportError as exc:
            raise ConfigError(
                ErrorCode.BAD_CONFIG,
                "the brainflow source needs the optional extra: "
                f"pip install 'stimloop[brainflow]' ({exc})",
            ) from exc
        self._BoardShim = BoardShim
        ip = BrainFlowInputParams()
        for key, value in (params or {}).items():
            if not hasattr(ip, key):
                raise ConfigError(
                    ErrorCode.BAD_CONFIG, f"unknown BrainFlowInputParams field {key!r}"
                )
            setattr(ip, key, value)
        try:
            with warnings.catch_warnings():
                # brainflow loads its native library through pkg_resources on first use.
                warnings.simplefilter("ignore")
                self.rate_hz = float(BoardShim.get_sampling_rate(board_id))
            self._eeg = list(BoardShim.get_eeg_channels(board_id))
            self._ts = BoardShim.get_timestamp_channel(board_id)
            try:
                self.labels = list(BoardShim.get_eeg_names(board_id))
            except Exception:
                self.labels = [f"EEG{k + 1}" for k in range(len(self._eeg))]
        except Exception as exc:
            raise ConfigError(
                ErrorCode.BAD_CONFIG, f"unknown BrainFlow board_id {board_id!r}: {exc}"
            ) from exc
        self.board_id = board_id
        self.source_id = source_id or f"stimloop-brainflow-{uuid.uuid4().hex[:12]}"
        self.poll_s = float(poll_s)
        self._params = ip
        self._board = None
        self._outlet = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._newest_t = -np.inf
        self._ok = False

    @property
    def source_ids(self) -> tuple[str, ...]:
        return (self.source_id,)

    def connect(self) -> None:
        if self._board is not None:
            raise DeviceError(ErrorCode.ALREADY_CONNECTED, f"{self.name}: already connected")
        board = self._BoardShim(self.board_id, self._params)
        try:
            board.prepare_session()
        except Exception as exc:
            raise DeviceError(
                ErrorCode.PORT_UNAVAILABLE, f"{self.name}: prepare_session failed: {exc}"
            ) from exc
        self._board = board

    def start(self) -> None:
        from stimloop.stream.outlet import Outlet, channel_specs

        if self._board is None:
            raise DeviceError(
                ErrorCode.NOT_CONNECTED, f"{self.name}: not connected; call connect()"
            )
        if self._thread is not None:
            return
        self._outlet = Outlet(
            f"brainflow-{self.board_id}", "EEG", self.source_id,
            channel_specs(self.labels, "uV", "EEG"), self.rate_hz, "float32",
            extra_desc={"brainflow_board_id": str(self.board_id)},
        )  # fmt: skip
        self._board.start_stream()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="brainflow-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                data = self._board.get_board_data()  # type: ignore[union-attr]
            except Exception:
                logger.exception("%s: get_board_data failed; stream flagged bad", self.name)
                self._ok = False
                return
            if data.shape[1] == 0:
                continue
            # BrainFlow stamps with Unix time; map the newest sample onto the LSL clock.
            offset = pylsl.local_clock() - time.time()
            t_last = float(data[self._ts, -1]) + offset
            self._outlet.push(data[self._eeg].T.astype(np.float32), t_last)  # type: ignore[union-attr]
            self._newest_t = t_last
            self._ok = True

    def freshness(self) -> tuple[float, bool]:
        return pylsl.local_clock() - self._newest_t, self._ok and self._thread is not None

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        self._ok = False
        try:
            self._board.stop_stream()  # type: ignore[union-attr]
        except Exception as exc:
            logger.warning("%s: stop_stream failed: %s", self.name, exc)
        if self._outlet is not None:
            self._outlet.close()
            self._outlet = None

    def close(self) -> None:
        self.stop()
        if self._board is not None:
            try:
                self._board.release_session()
            finally:
                self._board = None
