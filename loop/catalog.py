"""The catalog of every stream a session publishes beside its inputs.

One table says what each derived stream is: its source_id suffix, LSL name and type,
channels with units, rate and format. The stages build their outlets from it, the
status stream publishes it, and the window and ``stimloop analyze`` find streams by
looking them up here, never by spelling a name. A new derived stream is one
:func:`register` call (BrainFlow's board descriptor table is the model: one table that
says what each channel is).

A stream's source_id is ``{session prefix}-{suffix}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from stimloop.loop.errors import SessionError
from stimloop.stream.outlet import ChannelSpec, Outlet, channel_specs

T = TypeVar("T")


@dataclass(frozen=True)
class DerivedStream:
    """What one derived stream is.

    Attributes
    ----------
    key : str
        Catalog key (``"heart_hr"``); the status stream and the window use it.
    suffix : str
        source_id suffix (``"heart-hr"``): the stream is ``{prefix}-{suffix}``.
    name : str
        LSL stream name.
    type : str
        LSL content type (``"Markers"`` for JSON marker streams).
    channels : tuple of ChannelSpec
        Channels with labels and units (one ``string`` channel for markers).
    rate_hz : float or None
        Nominal rate in Hz; 0 = irregular; None = set by the session (e.g. the HR
        stream's configured rate), passed to :func:`outlet`.
    fmt : str
        ``"float64"`` or ``"string"`` (markers, one JSON object per sample).
    role : str
        The input role it is derived from (``"ecg"``), or ``""`` for the session's own.
    display_s : float
        How much history a live display keeps of it, s (0: not shown as a trace).
    description : str
        One line: what a sample holds.
    continuous : bool
        Samples come steadily (silence means trouble, so a display shows its health);
        False for event streams such as one sample per SCR.
    """

    key: str
    suffix: str
    name: str
    type: str
    channels: tuple[ChannelSpec, ...]
    rate_hz: float | None
    fmt: str = "float64"
    role: str = ""
    display_s: float = 0.0
    description: str = ""
    continuous: bool = True

    @property
    def is_marker(self) -> bool:
        """True for JSON marker streams."""
        return self.fmt == "string"

    def source_id(self, prefix: str) -> str:
        """The stream's source_id in the session with ``prefix``."""
        return f"{prefix}-{self.suffix}"

    def as_dict(self, prefix: str) -> dict[str, object]:
        """JSON-ready description (what the status stream publishes)."""
        return {
            "source_id": self.source_id(prefix),
            "name": self.name,
            "type": self.type,
            "channels": [[c.label, c.unit] for c in self.channels],
            "rate_hz": self.rate_hz,
            "marker": self.is_marker,
            "role": self.role,
            "display_s": self.display_s,
            "description": self.description,
            "continuous": self.continuous,
        }


def _marker(key: str, suffix: str, name: str, description: str, role: str = "",
            stype: str = "Markers") -> DerivedStream:  # fmt: skip
    return DerivedStream(key, suffix, name, stype, (ChannelSpec("marker"),), 0.0, "string",
                         role, 0.0, description, continuous=False)  # fmt: skip


_CATALOG: dict[str, DerivedStream] = {}
_PUBLISHED: dict[str, list[str]] = {}  # session prefix -> keys whose outlets it opened


def register(stream: DerivedStream) -> DerivedStream:
    """Add a derived stream to the catalog (its key and suffix must be new).

    Raises
    ------
    SessionError
        The key or the suffix is taken, or the suffix would make a source_id ambiguous.
    """
    if stream.key in _CATALOG:
        raise SessionError(f"derived stream key {stream.key!r} is already in the catalog")
    for other in _CATALOG.values():
        if other.suffix == stream.suffix or other.suffix.endswith(f"-{stream.suffix}") or \
                stream.suffix.endswith(f"-{other.suffix}"):  # fmt: skip
            raise SessionError(
                f"derived stream suffix {stream.suffix!r} collides with {other.suffix!r} "
                f"({other.key}); suffixes must not end in one another"
            )
    _CATALOG[stream.key] = stream
    return stream


def unregister(key: str) -> None:
    """Remove an entry (for tests and plug-ins that added one)."""
    _CATALOG.pop(key, None)


def get(key: str) -> DerivedStream:
    """The catalog entry ``key``.

    Raises
    ------
    SessionError
        No such entry; the known keys are listed.
    """
    try:
        return _CATALOG[key]
    except KeyError:
        raise SessionError(
            f"no derived stream {key!r} in the catalog; known: {sorted(_CATALOG)}"
        ) from None


def entries() -> tuple[DerivedStream, ...]:
    """Every catalog entry, in registration order."""
    return tuple(_CATALOG.values())


def describe(prefix: str, keys: Iterable[str] | None = None) -> dict[str, dict[str, object]]:
    """The catalog as the status stream publishes it: key -> :meth:`DerivedStream.as_dict`."""
    chosen = entries() if keys is None else [get(k) for k in keys]
    return {s.key: s.as_dict(prefix) for s in chosen}


def outlet(key: str, prefix: str, rate_hz: float | None = None,
           extra_desc: Mapping[str, str] | None = None) -> Outlet:  # fmt: skip
    """Open the LSL outlet of catalog entry ``key`` for the session ``prefix``.

    Parameters
    ----------
    key : str
        Catalog key.
    prefix : str
        Session prefix.
    rate_hz : float, optional
        Nominal rate in Hz for entries whose rate the session sets (``rate_hz`` None).
    extra_desc : mapping, optional
        Provenance written into the stream's ``desc`` (method, input rate, ...).
    """
    s = get(key)
    rate = s.rate_hz if s.rate_hz is not None else rate_hz
    if rate is None:
        raise SessionError(f"derived stream {key!r} needs its rate_hz from the session")
    out = Outlet(s.name, s.type, s.source_id(prefix), s.channels, float(rate), s.fmt,
                 extra_desc=dict(extra_desc or {}))  # fmt: skip
    mark_published(prefix, key)
    return out


def mark_published(prefix: str, key: str) -> str:
    """Note that the session ``prefix`` publishes entry ``key`` (its outlet was opened
    elsewhere, e.g. by the safety gate); return the stream's source_id."""
    keys = _PUBLISHED.setdefault(prefix, [])
    if key not in keys:
        keys.append(key)
    return get(key).source_id(prefix)


def published(prefix: str) -> dict[str, dict[str, object]]:
    """The entries the session ``prefix`` publishes, as its status stream carries them."""
    return describe(prefix, _PUBLISHED.get(prefix, ()))


def forget(prefix: str) -> None:
    """Drop the session ``prefix``'s publication list (it has closed its outlets)."""
    _PUBLISHED.pop(prefix, None)


def find(streams: Mapping[str, T], key: str, prefix: str) -> T | None:
    """The item of ``streams`` (keyed by source_id) that is entry ``key`` of session
    ``prefix``, or None."""
    return streams.get(get(key).source_id(prefix))


def _numeric(key: str, suffix: str, name: str, stype: str, channels: tuple[ChannelSpec, ...],
             rate_hz: float | None, role: str, display_s: float, description: str,
             continuous: bool = True) -> DerivedStream:  # fmt: skip
    return DerivedStream(key, suffix, name, stype, channels, rate_hz, "float64", role,
                         display_s, description, continuous)  # fmt: skip


#: The session's own streams and the derived streams of the built-in stages.
BUILT_IN = (
    _marker("decisions", "decisions", "stimloop decisions",
            "every decision, command, stream-health event and the config (JSON)"),
    _marker("safety", "safety", "stimloop safety gate",
            "every action and refusal of the HAL safety gate (JSON)"),
    _marker("status", "status", "stimloop status",
            "the session's status snapshot, 10 per second (JSON)", stype="Status"),
    _marker("pulses", "pulses", "stimloop delivered pulses",
            "every pulse the simulated stimulator delivered (JSON)"),
    _numeric("phase", "phase", "stimloop phase", "Phase",
             (*channel_specs(["phase"], "rad", "Phase"),
              *channel_specs(["amplitude"], "uV", "Amplitude"),
              *channel_specs(["confidence"], "", "Confidence")),
             0.0, "eeg", 120.0,
             "phase (rad; 0 = positive peak), envelope (µV) and confidence at the target, "
             "once per EEG chunk"),
    _marker("heart_beats", "heart-beats", "stimloop heart beats",
            "one marker per R peak, stamped at the peak (JSON)", role="ecg"),
    _numeric("heart_hr", "heart-hr", "stimloop heart rate", "HR",
             (ChannelSpec("hr_bpm", "bpm", "HR"), ChannelSpec("ibi_ms", "ms", "IBI"),
              ChannelSpec("rmssd_ms", "ms", "HRV"), ChannelSpec("sdnn_ms", "ms", "HRV"),
              ChannelSpec("flags", "bitfield", "Quality")),
             None, "ecg", 300.0, "HR, IBI, RMSSD, SDNN and quality flags at an even rate"),
    _numeric("eda_level", "eda-level", "stimloop EDA level", "EDA",
             (ChannelSpec("scl_us", "uS", "SCL"), ChannelSpec("phasic_us", "uS", "SCR"),
              ChannelSpec("scr_rate_per_min", "1/min", "SCR"),
              ChannelSpec("flags", "bitfield", "Quality")),
             None, "eda", 300.0, "SCL, phasic component, non-specific SCR rate and flags"),
    _numeric("eda_scr", "eda-scr", "stimloop EDA SCRs", "SCR",
             (ChannelSpec("onset_t", "s", "Time"), ChannelSpec("peak_t", "s", "Time"),
              ChannelSpec("confirmed_t", "s", "Time"), ChannelSpec("amplitude_us", "uS", "SCR"),
              ChannelSpec("rise_time_s", "s", "SCR"), ChannelSpec("onset_index", "sample", "Index"),
              ChannelSpec("peak_index", "sample", "Index")),
             0.0, "eda", 300.0, "one sample per confirmed SCR, stamped at its onset",
             continuous=False),
    _marker("eda_response", "eda-response", "stimloop EDA responses",
            "the event-related SCR of each stimulus, stamped at the stimulus (JSON)",
            role="eda"),
    _marker("exposure", "exposure", "stimloop exposure markers",
            "exercise start/end, ratings, cues, notes, calibration (schema "
            "stimloop-exposure/1, JSON)", role="eda"),
    _numeric("arousal", "arousal", "stimloop arousal index", "Arousal",
             (ChannelSpec("index", "z", "Arousal"), ChannelSpec("z_scl", "z", "Arousal"),
              ChannelSpec("z_rate", "z", "Arousal"), ChannelSpec("z_hr", "z", "Arousal"),
              ChannelSpec("band", "0-3", "State"), ChannelSpec("alert", "bool", "State")),
             0.0, "eda", 300.0,
             "arousal index and its z components, band (0 unknown, 1 hypo, 2 within, "
             "3 hyper) and alert, per EDA level sample"),
    _marker("exercises", "exercises", "stimloop exercise figures",
            "each exercise's physiology once its data are complete (JSON)", role="eda"),
    _marker("hbc", "hbc", "stimloop heart-brain coupling",
            "the localisation's plan, each cycle's HR change and HBC, each site's "
            "ranking (JSON)", role="ecg"),
)  # fmt: skip

for _s in BUILT_IN:
    register(_s)
