"""Exposure-session markers: the JSON schema, its builders, and the parser into exercises.

An exposure session is marked with one JSON object per LSL string marker (the marker's
LSL timestamp is the time of the event). The window, ``stimloop mark`` and the control
channel build markers with the functions here; PsychoPy, OpenViBE or any other program
can send the same JSON on its own marker outlet. ``docs/exposure.md`` documents the
schema for them.

==========================  ============================================================
``kind``                    fields (besides ``"schema": "stimloop-exposure/1"``, optional)
==========================  ============================================================
``calibration_start``       none: the client's rest period for the arousal index begins
``calibration_end``         none: it ends
``exercise_start``          ``label`` (str, 1-200 characters): what the exercise is
``exercise_end``            ``label`` (optional; checked against the open exercise)
``rating``                  ``scale``: ``"expectancy"`` (before the exercise: how likely
                            is the feared outcome), ``"suds"`` (distress) or ``"outcome"``
                            (after it: did the feared outcome happen); ``value`` 0-100;
                            ``moment`` (``"start"``, ``"peak"`` or ``"end"``) for SUDS only
``cue``                     ``label`` (optional str), ``code`` (optional int): an event
                            inside an exercise whose evoked SCR is scored
``learned``                 ``text`` (str, 1-2000 characters): "what I learned"
==========================  ============================================================

Which exercise a rating belongs to follows the clinical order (Craske et al. 2014,
"Maximizing exposure therapy: an inhibitory learning approach", Behav Res Ther 58:10-23:
expectancy before, outcome after). Inside an open exercise everything belongs to it.
Between exercises, ``expectancy`` and SUDS ``start`` wait for the next exercise; SUDS
``peak``/``end``, ``outcome`` and ``learned`` go to the exercise that ended last.

Bad input never crashes the parser and is never dropped silently: a marker that is not
valid JSON, has an unknown kind, a rating outside 0-100, ... is listed in
:attr:`ExposureLog.rejected` with the reason; a structural problem (an end without a start,
a cue outside any exercise, a rating that replaces an earlier one) is listed in
:attr:`ExposureLog.issues`. The raw markers stay in the recording either way. Builders
are strict instead: they raise :class:`ExposureMarkerError`, whose message names the
field, the value seen and what is allowed, so the window or the command line can tell
the user.

Free text (labels, notes) is stored safely: Unicode NFC, no control characters other
than newline and tab, no lone surrogates, no bidirectional embedding/override/isolate
controls (which can make displayed text read differently from what was typed), and
bounded in length. Builders refuse such text; the parser replaces each odd character
with U+FFFD and truncates over-long text, and says so in :attr:`ExposureLog.issues`.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Schema identifier written by the builders; senders may omit it.
SCHEMA = "stimloop-exposure/1"
KINDS = (
    "calibration_start",
    "calibration_end",
    "exercise_start",
    "exercise_end",
    "rating",
    "cue",
    "learned",
)
SCALES = ("expectancy", "suds", "outcome")
MOMENTS = ("start", "peak", "end")
RATING_RANGE = (0.0, 100.0)
MAX_LABEL_CHARS = 200
MAX_NOTE_CHARS = 2000
#: Longest marker accepted, in UTF-8 bytes (a full note of 4-byte characters fits).
MAX_MARKER_BYTES = 16384
_EXCERPT_CHARS = 80
_INT32 = (-(2**31), 2**31 - 1)
# Bidirectional embedding, override and isolate controls, and a byte-order mark inside
# text: they reorder or hide what is displayed ("Trojan Source", CVE-2021-42574).
_BIDI = frozenset([0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF])


class ExposureMarkerError(ValueError):
    """An exposure marker that does not follow the schema (names field, value, allowed)."""


# ---------------------------------------------------------------------------- text
def _odd_char(ch: str) -> bool:
    if ch in "\n\t":
        return False
    o = ord(ch)
    # Noncharacters (U+FDD0-U+FDEF and the last two code points of every plane) are
    # reserved for internal use and must not be interchanged (Unicode ch. 23.7).
    nonchar = 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE
    return unicodedata.category(ch) in ("Cc", "Cs") or o in _BIDI or nonchar


def sanitize_text(text: str, max_chars: int) -> tuple[str, list[str]]:
    """Make free text safe to store and display, and say what was changed.

    Parameters
    ----------
    text : str
        The text as received.
    max_chars : int
        Longest text kept, in characters (after normalisation).

    Returns
    -------
    clean : str
        NFC-normalised, ``\\r\\n``/``\\r`` turned into ``\\n``, surrounding whitespace
        stripped, every odd character (control characters other than newline and tab,
        lone surrogates, noncharacters, bidirectional embedding/override/isolate
        controls)
        replaced by U+FFFD, and truncated to ``max_chars``.
    changes : list of str
        One sentence per kind of change made (empty if the text was already clean).
    """
    changes: list[str] = []
    # Lone surrogates cannot be NFC-normalised (nor encoded): replace them first.
    chars = [("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c) for c in text]
    s = unicodedata.normalize("NFC", "".join(chars)).replace("\r\n", "\n").replace("\r", "\n")
    s = s.strip()
    odd = [i for i, c in enumerate(s) if _odd_char(c)]
    n_surrogate = sum(1 for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    if odd or n_surrogate:
        first = f"U+{ord(s[odd[0]]):04X} at position {odd[0]}" if odd else "a lone surrogate"
        changes.append(
            f"{len(odd) + n_surrogate} odd character(s) replaced by U+FFFD (first: {first})"
        )
        s = "".join("\ufffd" if _odd_char(c) else c for c in s)
    if len(s) > max_chars:
        changes.append(f"truncated from {len(s)} to {max_chars} characters")
        s = s[:max_chars]
    return s, changes


def _check_text(value: Any, name: str, max_chars: int, required: bool) -> str:
    """Strict validation of a free-text field (builders and strict parsing)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ExposureMarkerError(f"{name} must be a string, got {type(value).__name__}")
    for i, ch in enumerate(value):
        if 0xD800 <= ord(ch) <= 0xDFFF or (_odd_char(ch) and ch != "\r"):
            raise ExposureMarkerError(
                f"{name} contains the character U+{ord(ch):04X} at position {i}; allowed: "
                "printable text, newlines and tabs (no control, bidirectional-override or "
                "non-characters)"
            )
    clean, _ = sanitize_text(value, max_chars=10**9)
    if required and not clean:
        raise ExposureMarkerError(f"{name} is empty; expected 1-{max_chars} characters")
    if len(clean) > max_chars:
        raise ExposureMarkerError(
            f"{name} is {len(clean)} characters long; at most {max_chars} are allowed"
        )
    return clean


def _lenient_text(value: Any, name: str, max_chars: int, notes: list[str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ExposureMarkerError(f"{name} must be a string, got {type(value).__name__}")
    clean, changes = sanitize_text(value, max_chars)
    notes.extend(f"{name}: {c}" for c in changes)
    return clean


# ---------------------------------------------------------------------------- markers
@dataclass(frozen=True)
class ExposureMarker:
    """One validated exposure marker (its content; the time is the LSL timestamp).

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    label : str
        Exercise or cue label ("" if none).
    scale : str
        Rating scale (ratings only, else "").
    moment : str
        SUDS moment (SUDS only, else "").
    value : float
        Rating 0-100 (ratings only, else NaN).
    code : int or None
        Cue code, if the sender gave one.
    text : str
        The "what I learned" note (``learned`` only, else "").
    extra : dict
        Fields the schema does not define (kept, not interpreted).
    notes : tuple of str
        What lenient parsing changed (sanitised or truncated text).
    """

    kind: str
    label: str = ""
    scale: str = ""
    moment: str = ""
    value: float = math.nan
    code: int | None = None
    text: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _rating_value(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ExposureMarkerError(f"rating value must be a number 0-100, got {json.dumps(value)}")
    if isinstance(value, str):
        # Senders that format every field as text ("70") are tolerated.
        try:
            value = float(value.strip())
        except ValueError:
            raise ExposureMarkerError(
                f"rating value must be a number 0-100, got the string {value[:20]!r}"
            ) from None
    if not isinstance(value, int | float):
        raise ExposureMarkerError(
            f"rating value must be a number 0-100, got {type(value).__name__}"
        )
    v = float(value)
    lo, hi = RATING_RANGE
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ExposureMarkerError(f"rating value {v:g} is outside the allowed {lo:g}-{hi:g}")
    return v


def _normal_word(value: Any, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise ExposureMarkerError(
            f"{name} must be one of {list(allowed)}, got {json.dumps(value)[:40]}"
        )
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    if word not in allowed:
        raise ExposureMarkerError(
            f"{name} {value[:40]!r} is unknown; expected one of {list(allowed)}"
        )
    return word


def validate_marker(obj: Mapping[str, Any], *, lenient: bool = False) -> ExposureMarker:
    """Check one decoded marker object against the schema.

    Parameters
    ----------
    obj : mapping
        The decoded JSON object.
    lenient : bool
        False (builders): odd characters and over-long text raise. True (parsing markers
        from other senders): text is sanitised and truncated, and the changes are listed
        in :attr:`ExposureMarker.notes`. Everything else raises in both modes.

    Returns
    -------
    ExposureMarker

    Raises
    ------
    ExposureMarkerError
        Unknown kind or schema, missing or ill-typed field, rating outside 0-100, ...
    """
    if not isinstance(obj, Mapping):
        raise ExposureMarkerError(f"a marker must be a JSON object, got {type(obj).__name__}")
    schema = obj.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ExposureMarkerError(
            f"schema {str(schema)[:40]!r} is not supported; expected {SCHEMA!r} (or no 'schema')"
        )
    if "kind" not in obj:
        raise ExposureMarkerError(f"the marker has no 'kind'; expected one of {list(KINDS)}")
    kind = _normal_word(obj["kind"], "kind", KINDS)
    notes: list[str] = []

    def text(name: str, max_chars: int, required: bool) -> str:
        value = obj.get(name)
        if lenient:
            if required and value is None:
                raise ExposureMarkerError(f"{kind} needs '{name}' (1-{max_chars} characters)")
            out = _lenient_text(value, name, max_chars, notes)
            if required and not out:
                raise ExposureMarkerError(f"{name} is empty; expected 1-{max_chars} characters")
            return out
        if required and value is None:
            raise ExposureMarkerError(f"{kind} needs '{name}' (1-{max_chars} characters)")
        return _check_text(value, name, max_chars, required)

    known = {"schema", "kind"}
    fields: dict[str, Any] = {}
    if kind == "exercise_start":
        fields["label"] = text("label", MAX_LABEL_CHARS, required=True)
        known |= {"label"}
    elif kind in ("exercise_end", "calibration_start", "calibration_end"):
        fields["label"] = text("label", MAX_LABEL_CHARS, required=False)
        known |= {"label"}
    elif kind == "rating":
        fields.update(_rating_fields(obj))
        known |= {"scale", "value", "moment"}
    elif kind == "cue":
        fields["label"] = text("label", MAX_LABEL_CHARS, required=False)
        if obj.get("code") is not None:
            fields["code"] = _cue_code(obj["code"])
        known |= {"label", "code"}
    elif kind == "learned":
        fields["text"] = text("text", MAX_NOTE_CHARS, required=True)
        known |= {"text"}
    extra = {k: v for k, v in obj.items() if k not in known}
    return ExposureMarker(kind=kind, extra=extra, notes=tuple(notes), **fields)


def _rating_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``scale``, ``value`` and (SUDS only) ``moment`` of a rating marker."""
    if "scale" not in obj:
        raise ExposureMarkerError(f"rating needs 'scale', one of {list(SCALES)}")
    scale = _normal_word(obj["scale"], "scale", SCALES)
    if "value" not in obj:
        raise ExposureMarkerError(f"rating needs 'value' (a number 0-100) for {scale}")
    out = {"scale": scale, "value": _rating_value(obj["value"])}
    if scale == "suds":
        if "moment" not in obj:
            raise ExposureMarkerError(f"a SUDS rating needs 'moment', one of {list(MOMENTS)}")
        out["moment"] = _normal_word(obj["moment"], "moment", MOMENTS)
    elif obj.get("moment") is not None:
        raise ExposureMarkerError(
            f"'moment' applies to SUDS ratings only, not to {scale} "
            f"(got {str(obj['moment'])[:20]!r})"
        )
    return out


def _cue_code(code: Any) -> int:
    """A cue's event code: an integer in the 32-bit range (numeric strings accepted)."""
    if isinstance(code, bool) or not isinstance(code, int | float | str):
        raise ExposureMarkerError(f"cue code must be an integer, got {json.dumps(code)[:20]}")
    try:
        as_float = float(code)
    except ValueError:
        raise ExposureMarkerError(f"cue code must be an integer, got {code[:20]!r}") from None
    if not (math.isfinite(as_float) and as_float == int(as_float)):
        raise ExposureMarkerError(f"cue code must be an integer, got {code!r}")
    if not _INT32[0] <= int(as_float) <= _INT32[1]:
        raise ExposureMarkerError(
            f"cue code {int(as_float)} is outside the 32-bit range {_INT32[0]}..{_INT32[1]}"
        )
    return int(as_float)


def _decode(text: str | Sequence[str]) -> Any:
    if not isinstance(text, str):
        # A multi-channel marker sample: the JSON is in its first channel.
        if isinstance(text, Sequence) and len(text) >= 1 and isinstance(text[0], str):
            text = text[0]
        else:
            raise ExposureMarkerError(f"a marker must be a string, got {type(text).__name__}")
    n_bytes = len(text.encode("utf-8", "surrogatepass"))
    if n_bytes > MAX_MARKER_BYTES:
        raise ExposureMarkerError(
            f"marker is {n_bytes} bytes long; at most {MAX_MARKER_BYTES} are allowed"
        )
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped.startswith("{"):
        raise _NotJSON(
            f'marker {_excerpt(stripped)!r} is not a JSON object; expected {{"kind": ...}}'
        )
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError) as exc:
        raise ExposureMarkerError(f"marker is not valid JSON: {str(exc)[:120]}") from None


class _NotJSON(ExposureMarkerError):
    """A plain-text marker (not meant for this schema)."""


def parse_marker(text: str | Sequence[str], *, lenient: bool = True) -> ExposureMarker:
    """Decode and validate one marker string.

    Parameters
    ----------
    text : str or sequence of str
        The marker as it came off LSL (a one-element list is accepted).
    lenient : bool
        Sanitise odd characters and truncate over-long text instead of raising
        (see :func:`validate_marker`).

    Returns
    -------
    ExposureMarker

    Raises
    ------
    ExposureMarkerError
        Not a JSON object, larger than :data:`MAX_MARKER_BYTES`, or not the schema.
    """
    obj = _decode(text)
    return validate_marker(obj, lenient=lenient)


# ---------------------------------------------------------------------------- builders
def _dump(obj: dict[str, Any]) -> str:
    out = json.dumps({"schema": SCHEMA, **obj}, ensure_ascii=False, separators=(",", ":"))
    validate_marker(json.loads(out))  # a builder can never emit what the parser rejects
    return out


def calibration_start() -> str:
    """Marker: the client's calibration rest period (for the arousal index) begins."""
    return _dump({"kind": "calibration_start"})


def calibration_end() -> str:
    """Marker: the calibration rest period ends."""
    return _dump({"kind": "calibration_end"})


def exercise_start(label: str) -> str:
    """Marker: an exercise begins.

    Parameters
    ----------
    label : str
        What the exercise is (1-200 characters, free text).

    Raises
    ------
    ExposureMarkerError
        Empty, too long, or containing control/bidirectional-override characters.
    """
    return _dump(
        {"kind": "exercise_start", "label": _check_text(label, "label", MAX_LABEL_CHARS, True)}
    )


def exercise_end(label: str | None = None) -> str:
    """Marker: the open exercise ends.

    Parameters
    ----------
    label : str, optional
        The exercise's label; the parser reports it when it differs from the open one.
    """
    obj: dict[str, Any] = {"kind": "exercise_end"}
    if label is not None:
        obj["label"] = _check_text(label, "label", MAX_LABEL_CHARS, True)
    return _dump(obj)


def rating(scale: str, value: float, moment: str | None = None) -> str:
    """Marker: a rating on a 0-100 scale.

    Parameters
    ----------
    scale : {"expectancy", "suds", "outcome"}
        ``expectancy``: before the exercise, how likely the feared outcome is;
        ``suds``: subjective units of distress; ``outcome``: after it, whether the
        feared outcome happened.
    value : float
        0-100.
    moment : {"start", "peak", "end"}, optional
        Required for SUDS, not allowed for the others.

    Raises
    ------
    ExposureMarkerError
        Unknown scale or moment, value not a number in 0-100.
    """
    obj: dict[str, Any] = {"kind": "rating", "scale": scale, "value": value}
    if moment is not None:
        obj["moment"] = moment
    m = validate_marker(obj)
    out: dict[str, Any] = {"kind": "rating", "scale": m.scale, "value": m.value}
    if m.moment:
        out["moment"] = m.moment
    return _dump(out)


def cue(label: str = "", code: int | None = None) -> str:
    """Marker: a cue (an event inside the exercise whose evoked SCR is scored).

    Parameters
    ----------
    label : str
        What happened (optional, up to 200 characters).
    code : int, optional
        A numeric event code (e.g. the trigger code PsychoPy also sends).
    """
    obj: dict[str, Any] = {"kind": "cue"}
    if label:
        obj["label"] = _check_text(label, "label", MAX_LABEL_CHARS, True)
    if code is not None:
        obj["code"] = code
    m = validate_marker(obj)
    if m.code is not None:
        obj["code"] = m.code
    return _dump(obj)


def learned(text: str) -> str:
    """Marker: the client's "what I learned" note for the last exercise.

    Parameters
    ----------
    text : str
        1-2000 characters; newlines and tabs allowed, no control characters.
    """
    return _dump({"kind": "learned", "text": _check_text(text, "text", MAX_NOTE_CHARS, True)})


# ---------------------------------------------------------------------------- exercises
@dataclass(frozen=True)
class Rating:
    """A rating as given: LSL time (s), scale, SUDS moment ("" otherwise), value 0-100."""

    t: float
    scale: str
    moment: str
    value: float


@dataclass(frozen=True)
class Cue:
    """A cue: LSL time (s), label ("" if none), code (None if none)."""

    t: float
    label: str
    code: int | None


@dataclass
class Exercise:
    """One exercise, assembled from its markers.

    Attributes
    ----------
    number : int
        1-based, in the order of the starts.
    label : str
        From ``exercise_start``.
    start_t, end_t : float
        LSL time of start and end, s; ``end_t`` is NaN if no ``exercise_end`` came.
    expectancy, suds_start, suds_peak, suds_end, outcome : float
        Ratings 0-100; NaN when not given (the latest one when given twice).
    learned : str
        The "what I learned" note(s), joined by blank lines ("" if none).
    cues : list of Cue
        Cues inside the exercise, in time order.
    ratings : list of Rating
        Every rating attributed to this exercise, in time order (none is dropped).
    issues : list of str
        What was odd about this exercise's markers.
    """

    number: int
    label: str
    start_t: float
    end_t: float = math.nan
    expectancy: float = math.nan
    suds_start: float = math.nan
    suds_peak: float = math.nan
    suds_end: float = math.nan
    outcome: float = math.nan
    learned: str = ""
    cues: list[Cue] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """Whether an ``exercise_end`` closed it."""
        return math.isfinite(self.end_t)

    @property
    def duration_s(self) -> float:
        """End minus start, s (NaN if not ended)."""
        return self.end_t - self.start_t

    @property
    def expectancy_violation(self) -> float:
        """Expectancy minus outcome rating (0-100 points; NaN if either is missing).

        Positive: the feared outcome was expected more than it happened, the violation
        of expectancy that inhibitory learning builds on (Craske et al. 2014).
        """
        return self.expectancy - self.outcome

    def _set(self, slot: str, r: Rating) -> str | None:
        old = getattr(self, slot)
        msg = None
        if math.isfinite(old):
            msg = (
                f"exercise {self.number}: {_rating_name(r)} {r.value:g} at t={r.t:.3f} s "
                f"replaces the earlier {old:g}"
            )
            self.issues.append(msg)
        setattr(self, slot, r.value)
        self.ratings.append(r)
        return msg


def _rating_name(r: Rating) -> str:
    return f"SUDS {r.moment}" if r.scale == "suds" else r.scale


def _slot(r: Rating) -> str:
    return f"suds_{r.moment}" if r.scale == "suds" else r.scale


@dataclass(frozen=True)
class MarkerIssue:
    """A marker that could not be used, or a structural problem, at LSL time ``t`` (s)."""

    t: float
    reason: str
    marker: str = ""


@dataclass
class ExposureLog:
    """Everything the exposure markers of a session say.

    Attributes
    ----------
    exercises : list of Exercise
        In start order.
    calibrations : list of (float, float)
        Calibration rest periods (start, end) in LSL s; end NaN if never ended.
    orphan_cues : list of Cue
        Cues outside any exercise (kept, and listed in ``issues``).
    rejected : list of MarkerIssue
        Markers that did not follow the schema (excerpt and reason).
    issues : list of MarkerIssue
        Structural problems and sanitised text, with the time of the marker.
    ignored : int
        Plain-text (non-JSON) markers on the same stream, not meant for this schema.
    """

    exercises: list[Exercise] = field(default_factory=list)
    calibrations: list[tuple[float, float]] = field(default_factory=list)
    orphan_cues: list[Cue] = field(default_factory=list)
    rejected: list[MarkerIssue] = field(default_factory=list)
    issues: list[MarkerIssue] = field(default_factory=list)
    ignored: int = 0

    def intervals(self, ended_only: bool = True) -> np.ndarray:
        """Exercise (start, end) times in LSL s, shape (n, 2).

        Parameters
        ----------
        ended_only : bool
            Leave out exercises that never ended (their end is NaN).
        """
        rows = [(e.start_t, e.end_t) for e in self.exercises if e.ended or not ended_only]
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def cue_times(self) -> np.ndarray:
        """LSL times (s) of the cues inside exercises, sorted."""
        return np.sort(np.array([c.t for e in self.exercises for c in e.cues], dtype=np.float64))

    def calibration(self) -> tuple[float, float] | None:
        """The last complete calibration rest period (start, end), or None."""
        done = [c for c in self.calibrations if math.isfinite(c[1])]
        return done[-1] if done else None


def _excerpt(text: Any) -> str:
    raw = text if isinstance(text, str) else str(text)
    clean, _ = sanitize_text(raw[: _EXCERPT_CHARS * 2], _EXCERPT_CHARS)
    return clean


def parse_exercises(
    markers: Iterable[tuple[float, str | Sequence[str]]], *, strict: bool = False
) -> ExposureLog:
    """Assemble exercises, ratings, cues and calibration periods from markers.

    Parameters
    ----------
    markers : iterable of (t_lsl, marker)
        LSL time in s and the marker string (or a one-element list, as pulled from LSL),
        in any order (sorted here by time, stably).
    strict : bool
        Raise :class:`ExposureMarkerError` at the first bad marker or structural problem
        instead of listing it.

    Returns
    -------
    ExposureLog
    """
    asm = _Assembler(strict)
    items = []
    for k, (t, text) in enumerate(markers):
        try:
            tf = float(t)
        except (TypeError, ValueError):
            tf = math.nan
        items.append((tf, k, text))
    for t, _, text in items:
        if not math.isfinite(t):
            asm.problem(t, f"marker time {t!r} is not a finite LSL time", text, rejected=True)
    for t, _, text in sorted((i for i in items if math.isfinite(i[0])), key=lambda i: i[:2]):
        asm.take(t, text)
    return asm.finish()


class _Assembler:
    """The state of :func:`parse_exercises` while it walks the markers in time order."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.log = ExposureLog()
        self.open_ex: Exercise | None = None
        self.last_ex: Exercise | None = None
        self.pending: list[Rating] = []  # expectancy / SUDS start waiting for an exercise
        self.cal_start = math.nan

    def problem(self, t: float, reason: str, text: Any = "", rejected: bool = False) -> None:
        if self.strict:
            raise ExposureMarkerError(f"t={t:.3f} s: {reason}")
        issues = self.log.rejected if rejected else self.log.issues
        issues.append(MarkerIssue(t, reason, _excerpt(text)))

    def take(self, t: float, text: Any) -> None:
        try:
            m = parse_marker(text, lenient=not self.strict)
        except _NotJSON:
            self.log.ignored += 1
            return
        except ExposureMarkerError as exc:
            self.problem(t, str(exc), text, rejected=True)
            return
        for note in m.notes:
            self.problem(t, f"{m.kind}: {note}", text)
        getattr(self, f"_{m.kind}")(t, m, text)

    def _calibration_start(self, t: float, m: ExposureMarker, text: Any) -> None:
        if self.open_ex is not None:
            ex = self.open_ex
            self.problem(t, f"calibration_start inside exercise {ex.number} ({ex.label!r})")
        if math.isfinite(self.cal_start):
            self.problem(
                t,
                f"calibration_start while the one from t={self.cal_start:.3f} s "
                "is open; that one is left unended",
            )
            self.log.calibrations.append((self.cal_start, math.nan))
        self.cal_start = t

    def _calibration_end(self, t: float, m: ExposureMarker, text: Any) -> None:
        if not math.isfinite(self.cal_start):
            self.problem(t, "calibration_end without a calibration_start; expected a start first")
            return
        self.log.calibrations.append((self.cal_start, t))
        self.cal_start = math.nan

    def _exercise_start(self, t: float, m: ExposureMarker, text: Any) -> None:
        if (ex := self.open_ex) is not None:
            msg = (
                f"exercise_start ({m.label!r}) while exercise {ex.number} ({ex.label!r}) "
                f"is still open; expected exercise_end first. Exercise {ex.number} is "
                "left without an end"
            )
            ex.issues.append(msg)
            self.problem(t, msg)
            self.last_ex = ex
        self.open_ex = Exercise(number=len(self.log.exercises) + 1, label=m.label, start_t=t)
        self.log.exercises.append(self.open_ex)
        for r in self.pending:
            if msg := self.open_ex._set(_slot(r), r):
                self.problem(t, msg)
        self.pending.clear()

    def _exercise_end(self, t: float, m: ExposureMarker, text: Any) -> None:
        if (ex := self.open_ex) is None:
            self.problem(t, "exercise_end without an exercise_start; expected a start first", text)
            return
        if m.label and m.label != ex.label:
            msg = (
                f"exercise_end label {m.label!r} differs from the open exercise's "
                f"{ex.label!r}; the open exercise was ended"
            )
            ex.issues.append(msg)
            self.problem(t, msg)
        ex.end_t = t
        self.last_ex, self.open_ex = ex, None

    def _rating(self, t: float, m: ExposureMarker, text: Any) -> None:
        r = Rating(t, m.scale, m.moment, m.value)
        slot = _slot(r)
        before = slot in ("expectancy", "suds_start")
        # During an exercise it is that one's; between exercises, before-ratings wait for
        # the next one and the others belong to the one that ended last.
        target = self.open_ex if self.open_ex is not None else None if before else self.last_ex
        if target is not None:
            if msg := target._set(slot, r):
                self.problem(t, msg)
        elif before:
            self.pending.append(r)
        else:
            self.problem(
                t,
                f"{_rating_name(r)} rating {r.value:g} comes before any exercise; "
                "expected it during or after one",
                text,
            )

    def _cue(self, t: float, m: ExposureMarker, text: Any) -> None:
        c = Cue(t, m.label, m.code)
        if self.open_ex is not None:
            self.open_ex.cues.append(c)
        else:
            self.log.orphan_cues.append(c)
            self.problem(t, "cue outside any exercise; it is kept in orphan_cues", text)

    def _learned(self, t: float, m: ExposureMarker, text: Any) -> None:
        target = self.open_ex if self.open_ex is not None else self.last_ex
        if target is None:
            self.problem(t, "'learned' note comes before any exercise; expected it after one", text)
        else:
            target.learned = f"{target.learned}\n\n{m.text}" if target.learned else m.text

    def finish(self) -> ExposureLog:
        """Name what was left open, and return the log."""
        if (ex := self.open_ex) is not None:
            msg = f"exercise {ex.number} ({ex.label!r}) has no exercise_end"
            ex.issues.append(msg)
            self.problem(ex.start_t, msg)
        for r in self.pending:
            self.problem(r.t, f"{_rating_name(r)} rating {r.value:g} has no exercise after it")
        if math.isfinite(self.cal_start):
            self.problem(self.cal_start, "calibration_start has no calibration_end")
            self.log.calibrations.append((self.cal_start, math.nan))
        return self.log
