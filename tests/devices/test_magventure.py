"""MagVenture MagPro driver against the pty emulator: framing, CRC, faults."""

from __future__ import annotations

import itertools
import time

import pylsl
import pytest
import serial

from stimloop.devices.base import TrainSpec
from stimloop.devices.emulators.magventure import MagProEmulator
from stimloop.devices.errors import DeviceError, ErrorCode, PortError, ProtocolError
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.magventure import MagProStimulator, crc8_maxim, frame


def crc8_maxim_reference(data: bytes) -> int:
    """Independent formulation: MSB-first CRC with polynomial 0x31 on bit-reversed data."""

    def rev(b: int) -> int:
        return int(f"{b:08b}"[::-1], 2)

    crc = 0
    for byte in data:
        crc ^= rev(byte)
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return rev(crc)


def test_crc8_maxim_check_value_and_reference():
    assert crc8_maxim(b"123456789") == 0xA1  # catalogue check value of CRC-8/MAXIM
    for payload in (b"\x00", b"\x01\x32", b"\x02\x01", bytes(range(40))):
        assert crc8_maxim(payload) == crc8_maxim_reference(payload)


def test_frame_layout():
    f = frame(b"\x01\x32")
    assert f[0] == 0xFE and f[1] == 2 and f[2:4] == b"\x01\x32" and f[-1] == 0xFF
    assert f[4] == crc8_maxim(b"\x01\x32")


def test_emulator_ignores_bad_crc_and_driver_reports_no_reply():
    with MagProEmulator() as emu:
        with serial.Serial(emu.port, 38400, timeout=0.3) as raw:
            bad = bytearray(frame(b"\x00"))
            bad[3] ^= 0xFF
            raw.write(bytes(bad))
            assert raw.read(13) == b""
            assert emu.checksum_errors == 1
            raw.write(frame(b"\x00"))
            assert len(raw.read(13)) == 13


def test_garbled_reply_is_an_error_and_leaves_nothing_armed():
    with MagProEmulator(arm_time_s=0.0) as emu:
        with SafeStimulator(MagProStimulator(emu.port)) as gate:
            gate.set_intensity(40)
            gate.arm()
            emu.garble_next = True
            with pytest.raises(ProtocolError) as exc:
                gate.fire()
            assert exc.value.code == ErrorCode.GARBLED_REPLY
            assert not emu.enabled  # the gate disarmed after the bad reply
            assert len(emu.pulses) == 1  # the unit did fire; only its reply was garbled


def test_missing_and_vanished_port():
    with pytest.raises(PortError) as exc:
        MagProStimulator("/dev/stimloop-no-such-port").connect()
    assert exc.value.code == ErrorCode.PORT_UNAVAILABLE
    emu = MagProEmulator(arm_time_s=0.0).start()
    drv = MagProStimulator(emu.port, timeout_s=0.1)
    drv.connect()
    drv.set_intensity(40)
    drv.arm()
    emu.unplug()
    with pytest.raises(DeviceError) as exc:
        drv.fire()
    assert exc.value.code in (ErrorCode.PORT_LOST, ErrorCode.NO_REPLY)
    st = drv.status()
    assert st.error is not None and not st.armed
    drv.close()
    assert not drv.connected


def test_train_parameters_reach_the_device():
    with MagProEmulator(arm_time_s=0.0) as emu:
        with MagProStimulator(emu.port) as drv:
            drv.set_intensity(35)
            drv.configure_train(TrainSpec(12.5, 25))
            assert emu.train[:2] == (125, 25)
            drv.arm()
            t0 = drv.fire_train()
            # The unit runs the train on its own clock: 25 pulses 80 ms apart, ~1.9 s.
            deadline = t0 + 5.0
            while emu.train_running and pylsl.local_clock() < deadline:
                time.sleep(0.02)
            times = [t for t, _ in emu.pulses]
            assert len(times) == 25 and {a for _, a in emu.pulses} == {35}
            assert max(abs(b - a - 0.08) for a, b in itertools.pairwise(times)) < 1e-9
            with pytest.raises(DeviceError) as exc:
                drv.configure_train(TrainSpec(12.55, 25))
            assert exc.value.code == ErrorCode.BAD_ARGUMENT
