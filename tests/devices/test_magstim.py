"""Magstim driver against the pty emulator: protocol, keep-alive, faults, bad input."""

from __future__ import annotations

import time

import pylsl
import pytest
import serial

from stimloop.devices.base import TrainSpec
from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.errors import DeviceError, ErrorCode, PortError, ProtocolError
from stimloop.devices.safety import SafeStimulator
from stimloop.devices.stimulators.magstim import (
    RAPID_MAX_FREQUENCY_HZ,
    Magstim200,
    MagstimBiStim,
    MagstimRapid,
    checksum,
    encode,
)


def wait_for(cond, deadline_s: float = 5.0) -> bool:
    end = pylsl.local_clock() + deadline_s
    while pylsl.local_clock() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_checksum_matches_published_examples():
    # "Q@" + "n" is MagPy's keep-alive string; "X@" -> 0x67 is in Boulay's README table.
    assert encode("Q@") == b"Q@n"
    assert checksum(b"X@") == 0x67
    assert encode("EH") == b"EH" + bytes([~(0x45 + 0x48) & 0xFF])


def test_rapid_frequency_table_shape_and_spot_values():
    for key, row in RAPID_MAX_FREQUENCY_HZ.items():
        assert len(row) == 101, key
        assert list(row) == sorted(row, reverse=True), key  # never faster at higher power
    assert RAPID_MAX_FREQUENCY_HZ[(240, 0)][30] == 50
    assert RAPID_MAX_FREQUENCY_HZ[(240, 0)][100] == 15
    assert RAPID_MAX_FREQUENCY_HZ[(115, 0)][100] == 11


def test_emulator_rejects_bad_checksum_and_unknown_command():
    with MagstimEmulator() as emu, serial.Serial(emu.port, 9600, timeout=0.5) as raw:
        raw.write(b"Q@\x00")
        assert raw.read(2) == b"?" + bytes([checksum(b"?")])
        raw.write(b"~")
        assert raw.read(2) == b"?" + bytes([checksum(b"?")])
        assert emu.checksum_errors == 2 and not emu.remote
        raw.write(encode("Q@"))
        reply = raw.read(3)
        assert reply[:1] == b"Q" and reply[1] & 0x80 and checksum(reply[:2]) == reply[2]


def test_emulator_models_keepalive_timeout():
    with MagstimEmulator(arm_time_s=0.0, armed_timeout_s=0.3) as emu:
        with serial.Serial(emu.port, 9600, timeout=0.5) as raw:
            raw.write(encode("Q@"))
            raw.read(3)
            raw.write(encode("EB"))
            raw.read(3)
            assert emu.armed
            assert wait_for(lambda: not emu.armed)
            assert emu.events[-1][1] == "keepalive_timeout" and not emu.remote


def test_keepalive_holds_control_while_armed():
    with MagstimEmulator(arm_time_s=0.05, armed_timeout_s=0.5) as emu:
        drv = Magstim200(emu.port, keepalive_armed_s=0.2)
        drv.connect()
        try:
            drv.set_intensity(40)
            drv.arm()
            t = pylsl.local_clock()
            wait_for(lambda: pylsl.local_clock() > t + 1.2, 3.0)  # > 2 device timeouts
            assert emu.armed and emu.remote and emu.events == []
            assert drv.status().error is None
            assert sum(1 for _, c in emu.received if c == b"Q@") >= 3
        finally:
            drv.close()
        assert not emu.armed and not emu.remote


def test_keepalive_loss_silent_device_is_detected_and_reported():
    with MagstimEmulator(arm_time_s=0.05) as emu:
        gate = SafeStimulator(Magstim200(emu.port, keepalive_armed_s=0.1, timeout_s=0.1))
        gate.connect()
        try:
            gate.set_intensity(40)
            gate.arm()
            emu.silent = True
            assert wait_for(lambda: "keep-alive lost" in (gate.status().error or ""))
            with pytest.raises(DeviceError) as exc:
                gate.fire()
            assert exc.value.code == ErrorCode.KEEPALIVE_LOST
            assert emu.pulses == []
        finally:
            emu.silent = False
            gate.close()


def test_device_dropout_is_detected_when_keepalive_too_slow():
    # Misconfigured: keep-alive slower than the unit's timeout. The unit drops remote
    # control and disarms; the driver notices on its next contact and reports it.
    with MagstimEmulator(arm_time_s=0.05, armed_timeout_s=0.3) as emu:
        drv = Magstim200(emu.port, keepalive_armed_s=0.6)
        drv.connect()
        try:
            drv.set_intensity(40)
            drv.arm()
            assert wait_for(lambda: bool(emu.events))  # not polling status(): that is contact too
            assert emu.events[0][1] == "keepalive_timeout"
            assert wait_for(lambda: "disarmed itself" in (drv.status().error or ""))
            with pytest.raises(DeviceError) as exc:
                drv.fire()
            assert exc.value.code == ErrorCode.KEEPALIVE_LOST
        finally:
            drv.close()


def test_garbled_reply_is_an_error_and_leaves_nothing_armed():
    with MagstimEmulator(arm_time_s=0.05) as emu:
        with SafeStimulator(Magstim200(emu.port)) as gate:
            gate.set_intensity(40)
            gate.arm()
            emu.garble_next = True
            with pytest.raises(ProtocolError) as exc:
                gate.fire()
            assert exc.value.code == ErrorCode.GARBLED_REPLY and "checksum" in exc.value.message
            assert not emu.armed


def test_missing_port_is_a_clear_error():
    with pytest.raises(PortError) as exc:
        Magstim200("/dev/stimloop-no-such-port").connect()
    assert exc.value.code == ErrorCode.PORT_UNAVAILABLE
    assert "/dev/stimloop-no-such-port" in exc.value.message


def test_vanished_port_is_a_clear_error():
    emu = MagstimEmulator(arm_time_s=0.05).start()
    gate = SafeStimulator(Magstim200(emu.port, timeout_s=0.1, keepalive_armed_s=5.0))
    gate.connect()
    try:
        gate.set_intensity(40)
        gate.arm()
        emu.unplug()
        with pytest.raises(DeviceError) as exc:
            gate.fire()
        assert exc.value.code in (ErrorCode.PORT_LOST, ErrorCode.NO_REPLY)
        st = gate.status()
        assert st.error is not None and not st.armed
    finally:
        gate.close()
    assert not gate.connected


def test_arming_time_and_arm_timeout():
    with MagstimEmulator(arm_time_s=5.0) as emu:
        drv = Magstim200(emu.port, arm_timeout_s=0.2)
        drv.connect()
        try:
            with pytest.raises(DeviceError) as exc:
                drv.arm()
            assert exc.value.code == ErrorCode.NOT_READY
            assert not emu.armed
        finally:
            drv.close()


def test_coil_temperature_rises_and_cuts_out():
    with MagstimEmulator(arm_time_s=0.0, heat_c_per_pulse=10.0) as emu:
        drv = Magstim200(emu.port)
        drv.connect()
        try:
            t0 = drv.status().coil_temperature_c
            drv.set_intensity(100)
            drv.arm()
            drv.fire()
            assert drv.status().coil_temperature_c > t0
            drv.fire()  # now above 40 °C
            assert wait_for(lambda: not emu.armed)  # > 40 °C: the unit disarms itself
            st = drv.status()
            assert st.coil_temperature_c > 40 and "coil" in (st.error or "")
            with pytest.raises(DeviceError):
                drv.arm()
        finally:
            drv.close()


def test_quickfire_needs_modem_lines_which_a_pty_lacks():
    with MagstimEmulator() as emu:
        with pytest.raises(PortError) as exc:
            Magstim200(emu.port, trigger="rts").connect()
        assert exc.value.code == ErrorCode.UNSUPPORTED and "RTS" in exc.value.message


def test_bistim_and_rapid_parameters():
    with MagstimEmulator("bistim", arm_time_s=0.0) as emu:
        with MagstimBiStim(emu.port) as drv:
            drv.set_intensity(55)
            assert emu.power_a == 55 and drv.status().intensity_pct == 55.0
            with pytest.raises(DeviceError) as exc:
                drv.configure_train(TrainSpec(5, 5))
            assert exc.value.code == ErrorCode.UNSUPPORTED
    with MagstimEmulator("rapid", arm_time_s=0.0) as emu:
        with MagstimRapid(emu.port) as drv:
            drv.set_intensity(50.0)
            assert drv.max_frequency_hz(50) == 30.0 and drv.max_frequency_hz(49.5) == 30.0
            with pytest.raises(DeviceError) as exc:
                drv.set_intensity(50.5)
            assert exc.value.code == ErrorCode.BAD_ARGUMENT


def test_device_rejection_is_reported():
    with MagstimEmulator("rapid", arm_time_s=0.0) as emu:
        with serial.Serial(emu.port, 9600, timeout=0.5) as raw:
            raw.write(encode("Q@"))
            raw.read(3)
            raw.write(encode("B0990"))  # 99 Hz at 30 % power: above the unit's limit
            assert raw.read(3) == b"B?" + bytes([checksum(b"B?")])
