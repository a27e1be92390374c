"""The driver conformance kit run against every built-in driver (acceptance of issue 7)."""

from __future__ import annotations

import pytest

from stimloop.devices.emulators.magstim import MagstimEmulator
from stimloop.devices.emulators.magventure import MagProEmulator
from stimloop.devices.sources.brainflow import BrainFlowSource
from stimloop.devices.stimulators.magstim import Magstim200, MagstimRapid
from stimloop.devices.stimulators.magventure import MagProStimulator
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.devices.testing import SourceContract, StimulatorContract


class TestSimulatedStimulator(StimulatorContract):
    @pytest.fixture
    def make_driver(self, source_id):
        return lambda: SimulatedStimulator(source_id=source_id, arm_time_s=0.02)

    @pytest.fixture
    def pulse_times(self):
        return lambda driver: [p.t_lsl for p in driver.pulses]


class TestMagstim200Emulator(StimulatorContract):
    @pytest.fixture
    def make_driver(self):
        emu = MagstimEmulator("200", arm_time_s=0.05).start()
        yield lambda: Magstim200(emu.port)
        emu.close()


class TestMagstimRapidEmulator(StimulatorContract):
    @pytest.fixture
    def emu(self):
        emu = MagstimEmulator("rapid", arm_time_s=0.05).start()
        yield emu
        emu.close()

    @pytest.fixture
    def make_driver(self, emu):
        return lambda: MagstimRapid(emu.port)

    @pytest.fixture
    def pulse_times(self, emu):
        return lambda driver: [t for t, _ in emu.pulses]


class TestMagProEmulator(StimulatorContract):
    @pytest.fixture
    def emu(self):
        emu = MagProEmulator(arm_time_s=0.05).start()
        yield emu
        emu.close()

    @pytest.fixture
    def make_driver(self, emu):
        return lambda: MagProStimulator(emu.port)

    @pytest.fixture
    def pulse_times(self, emu):
        return lambda driver: [t for t, _ in emu.pulses]


class TestBrainFlowSyntheticSource(SourceContract):
    @pytest.fixture
    def make_source(self, source_id):
        return lambda: BrainFlowSource(board_id=-1, source_id=source_id)
