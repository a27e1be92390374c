"""Driver conformance kit (contract tests); import via :mod:`stimloop.devices.testing`.

Use it by subclassing a contract in a test module and providing one fixture that builds
a *new, unconnected* driver (plus whatever it needs, e.g. an emulator)::

    import pytest
    from stimloop.devices.testing import StimulatorContract

    class TestAcmeStim(StimulatorContract):
        @pytest.fixture
        def make_driver(self, tmp_path):
            emu = AcmeEmulator().start()
            yield lambda: AcmeStimulator(port=emu.port)
            emu.close()

Every ``test_*`` method of the contract then runs against the driver: the state machine
(connect → arm → fire → disarm → close), error paths with their codes, status fields,
scheduled firing never early, the safety gate applying its limits, the emergency stop,
a disarm stopping a running repetitive train, and teardown without leaked threads or
file descriptors. A driver with trains also provides ``pulse_times``, a fixture giving a
callable ``(driver) -> list of LSL times (s)`` of the pulses the device (its emulator or
simulator) delivered, so the kit can see that no pulse follows the disarm::

        @pytest.fixture
        def pulse_times(self, emu):
            return lambda driver: [t for t, _ in emu.pulses]
 The ``leak_check`` fixture
comes from this package's pytest plugin (``stimloop.devices.testing.plugin``,
registered through the ``pytest11`` entry point).
"""

from __future__ import annotations

import math

import pytest

from stimloop.devices.base import Source, Stimulator, StimulatorStatus, TrainSpec
from stimloop.devices.errors import DeviceError, EmergencyStopError, ErrorCode, SafetyError

__all__ = ["SourceContract", "StimulatorContract"]


def _code(excinfo: pytest.ExceptionInfo) -> ErrorCode:
    return excinfo.value.code


@pytest.mark.conformance
class StimulatorContract:
    """Contract tests for :class:`~stimloop.devices.base.Stimulator` drivers.

    Subclasses provide the ``make_driver`` fixture (a zero-argument callable returning a
    new unconnected driver) and, for a driver with repetitive trains, ``pulse_times``.
    They may override ``test_intensity`` (a setting the device accepts, default 30 % MSO)
    and ``test_train`` (a train the device accepts at that intensity, >= 5 pulses).
    """

    test_intensity: float = 30.0
    test_train: TrainSpec = TrainSpec(frequency_hz=10.0, n_pulses=10)

    @pytest.fixture
    def pulse_times(self):
        """Override for a driver with trains: ``(driver) -> [LSL time in s of each pulse
        the device delivered]``, read from the emulator or simulator, not the driver."""
        return None

    @pytest.fixture
    def driver(self, make_driver):
        drv = make_driver()
        yield drv
        drv.close()

    def test_is_a_stimulator_with_metadata(self, driver: Stimulator) -> None:
        assert isinstance(driver, Stimulator)
        assert driver.name and driver.kind == "stimulator" and driver.description

    def test_connect_close_lifecycle(self, driver: Stimulator) -> None:
        assert not driver.connected
        driver.connect()
        assert driver.connected
        driver.close()
        assert not driver.connected
        driver.close()  # idempotent

    def test_connect_twice_is_refused(self, driver: Stimulator) -> None:
        driver.connect()
        with pytest.raises(DeviceError) as exc:
            driver.connect()
        assert _code(exc) == ErrorCode.ALREADY_CONNECTED

    @pytest.mark.parametrize("call", ["arm", "set_intensity", "fire"])
    def test_calls_before_connect_are_refused(self, driver: Stimulator, call: str) -> None:
        args = (self.test_intensity,) if call == "set_intensity" else ()
        with pytest.raises(DeviceError) as exc:
            getattr(driver, call)(*args)
        assert _code(exc) == ErrorCode.NOT_CONNECTED

    def test_fire_needs_arm(self, driver: Stimulator) -> None:
        driver.connect()
        with pytest.raises(DeviceError) as exc:
            driver.fire()
        assert _code(exc) == ErrorCode.NOT_ARMED

    def test_status_fields(self, driver: Stimulator) -> None:
        driver.connect()
        st = driver.status()
        assert isinstance(st, StimulatorStatus)
        assert st.connected is True and st.armed is False and st.ready is False
        assert isinstance(st.coil_present, bool)
        assert st.coil_temperature_c is None or math.isfinite(st.coil_temperature_c)
        assert isinstance(st.intensity_pct, float)
        assert st.error is None

    def test_arm_fire_disarm(self, driver: Stimulator) -> None:
        import pylsl

        driver.connect()
        driver.set_intensity(self.test_intensity)
        assert driver.status().intensity_pct == self.test_intensity
        driver.arm()
        st = driver.status()
        assert st.armed and st.ready
        before = pylsl.local_clock()
        t = driver.fire()
        assert before <= t <= pylsl.local_clock()
        driver.disarm()
        assert not driver.status().armed
        with pytest.raises(DeviceError) as exc:
            driver.fire()
        assert _code(exc) == ErrorCode.NOT_ARMED

    def test_scheduled_fire_is_never_early(self, driver: Stimulator) -> None:
        import pylsl

        driver.connect()
        driver.set_intensity(self.test_intensity)
        driver.arm()
        at = pylsl.local_clock() + 0.05
        assert driver.fire(at=at) >= at

    @pytest.mark.parametrize("bad", [-1.0, 1000.0, float("nan")], ids=["negative", "huge", "nan"])
    def test_bad_intensity_is_refused(self, driver: Stimulator, bad: float) -> None:
        driver.connect()
        with pytest.raises(DeviceError) as exc:
            driver.set_intensity(bad)
        assert _code(exc) == ErrorCode.BAD_ARGUMENT
        assert not driver.status().armed

    def test_close_while_armed_leaves_it_closed(self, driver: Stimulator) -> None:
        driver.connect()
        driver.set_intensity(self.test_intensity)
        driver.arm()
        driver.close()
        assert not driver.connected
        assert not driver.status().armed

    def test_safety_limits_apply(self, make_driver) -> None:
        from stimloop.devices.limits import SafetyLimits
        from stimloop.devices.safety import SafeStimulator

        gate = SafeStimulator(make_driver(), SafetyLimits(max_intensity_pct=40.0, max_pulses=1))
        try:
            gate.connect()
            gate.set_intensity(self.test_intensity)
            with pytest.raises(SafetyError) as exc:
                gate.set_intensity(41.0)
            assert _code(exc) == ErrorCode.INTENSITY_LIMIT
            assert gate.status().intensity_pct == self.test_intensity  # not clamped, unchanged
            gate.arm()
            gate.fire()
            with pytest.raises(SafetyError) as exc:
                gate.fire()
            assert _code(exc) == ErrorCode.PULSE_LIMIT
            assert gate.pulses_delivered == 1
        finally:
            gate.close()

    def test_emergency_stop_disarms_and_latches(self, make_driver) -> None:
        from stimloop.devices.estop import emergency_stop, reset_emergency_stop
        from stimloop.devices.safety import SafeStimulator

        gate = SafeStimulator(make_driver())
        try:
            gate.connect()
            gate.set_intensity(self.test_intensity)
            gate.arm()
            emergency_stop("conformance test")
            assert not gate.status().armed
            with pytest.raises(EmergencyStopError):
                gate.arm()
            with pytest.raises(EmergencyStopError):
                gate.fire()
        finally:
            reset_emergency_stop("conformance test done")
            gate.close()

    def test_disarm_during_a_train_stops_it(self, driver: Stimulator, pulse_times) -> None:
        """Disarm after the train's third pulse: no pulse may follow the disarm's return
        (the e-stop, the watchdog and the gate's disarm all end in ``driver.disarm``)."""
        import time

        import pylsl

        driver.connect()
        driver.set_intensity(self.test_intensity)
        try:
            driver.configure_train(self.test_train)
        except DeviceError as exc:
            if exc.code != ErrorCode.UNSUPPORTED:
                raise
            # No trains: then none may start either, armed or not.
            driver.arm()
            with pytest.raises(DeviceError) as refused:
                driver.fire_train()
            assert _code(refused) == ErrorCode.UNSUPPORTED
            return
        assert pulse_times is not None, (
            f"{driver.name} supports trains: provide the pulse_times fixture, "
            "(driver) -> LSL times of the pulses the device delivered"
        )
        driver.arm()
        t0 = driver.fire_train()
        t_end = t0 + (self.test_train.n_pulses - 1) / self.test_train.frequency_hz
        while len(pulse_times(driver)) < 3 and pylsl.local_clock() < t_end + 1.0:
            time.sleep(0.002)
        driver.disarm()
        t_ack = pylsl.local_clock()
        time.sleep(max(t_end + 0.2 - pylsl.local_clock(), 0.0))  # to the train's natural end
        times = pulse_times(driver)
        assert [t - t_ack for t in times if t > t_ack] == [], "pulses after the disarm returned"
        assert 3 <= len(times) < self.test_train.n_pulses
        st = driver.status()
        assert not st.armed and st.train_running in (False, None)

    def test_teardown_leaks_nothing(self, make_driver, leak_check) -> None:
        drv = make_driver()
        drv.connect()
        drv.set_intensity(self.test_intensity)
        drv.arm()
        drv.fire()
        drv.close()
        threads, fds = leak_check.leaked()
        assert threads == [] and fds == []


@pytest.mark.conformance
class SourceContract:
    """Contract tests for :class:`~stimloop.devices.base.Source` drivers.

    Subclasses provide ``make_source`` (a zero-argument callable returning a new,
    unconnected source).
    """

    @pytest.fixture
    def source(self, make_source):
        src = make_source()
        yield src
        src.close()

    def test_is_a_source_with_metadata(self, source: Source) -> None:
        assert isinstance(source, Source)
        assert source.name and source.kind == "source" and source.description
        assert source.source_ids and all(isinstance(s, str) and s for s in source.source_ids)

    def test_start_before_connect_is_refused(self, source: Source) -> None:
        with pytest.raises(DeviceError) as exc:
            source.start()
        assert _code(exc) == ErrorCode.NOT_CONNECTED

    def test_connect_twice_is_refused(self, source: Source) -> None:
        source.connect()
        with pytest.raises(DeviceError) as exc:
            source.connect()
        assert _code(exc) == ErrorCode.ALREADY_CONNECTED

    def test_publishes_lsl_and_reports_freshness(self, source: Source) -> None:
        import pylsl

        source.connect()
        assert source.freshness()[1] is False  # nothing streamed yet: not good
        source.start()
        infos: list = []
        deadline = pylsl.local_clock() + 15.0  # resolution can be slow on a loaded machine
        while not infos and pylsl.local_clock() < deadline:
            infos = pylsl.resolve_byprop("source_id", source.source_ids[0], timeout=3.0)
        assert len(infos) == 1
        inlet = pylsl.StreamInlet(infos[0])
        try:
            n = 0
            deadline = pylsl.local_clock() + 5.0
            while n == 0 and pylsl.local_clock() < deadline:
                _, stamps = inlet.pull_chunk(timeout=0.5)
                n += len(stamps)
            assert n > 0
            age, ok = source.freshness()
            assert ok and 0 <= age < 1.0
        finally:
            inlet.close_stream()
            del inlet
        source.stop()
        assert source.freshness()[1] is False

    def test_close_is_idempotent_and_leaks_nothing(self, make_source, leak_check) -> None:
        src = make_source()
        src.connect()
        src.start()
        src.close()
        src.close()
        threads, _ = leak_check.leaked()
        assert threads == []
