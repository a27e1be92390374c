"""Serial TTL trigger line: clear errors where the line cannot exist or is misused."""

from __future__ import annotations

import pytest

from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.errors import DeviceError, ErrorCode, PortError
from stimloop.devices.registry import open_trigger
from stimloop.devices.triggers import SerialTTL


def test_pty_has_no_modem_lines_so_open_is_refused_clearly():
    with MagstimEmulator() as emu:
        line = open_trigger("serial-ttl", port=emu.port, line="dtr")
        with pytest.raises(PortError) as exc:
            line.open()
        assert exc.value.code == ErrorCode.UNSUPPORTED and "DTR" in exc.value.message
        line.close()  # idempotent after a failed open


def test_missing_port_and_bad_arguments():
    with pytest.raises(PortError) as exc:
        SerialTTL("/dev/stimloop-no-such-port").open()
    assert exc.value.code == ErrorCode.PORT_UNAVAILABLE
    with pytest.raises(DeviceError) as exc:
        SerialTTL("/dev/null", line="cts")
    assert exc.value.code == ErrorCode.BAD_ARGUMENT and "'cts'" in exc.value.message
    with pytest.raises(DeviceError) as exc:
        SerialTTL("/dev/null").pulse()
    assert exc.value.code == ErrorCode.NOT_CONNECTED
