"""What LSL streams can this machine see?"""

from __future__ import annotations

from typing import Any

import pylsl

_FORMAT_NAMES = {
    pylsl.cf_float32: "float32",
    pylsl.cf_double64: "float64",
    pylsl.cf_string: "string",
    pylsl.cf_int32: "int32",
    pylsl.cf_int16: "int16",
    pylsl.cf_int8: "int8",
    pylsl.cf_int64: "int64",
}


def list_streams(wait_s: float = 1.0) -> list[dict[str, Any]]:
    """Describe every visible LSL stream.

    Parameters
    ----------
    wait_s : float
        Seconds to listen for stream announcements.

    Returns
    -------
    list of dict
        One dict per stream with ``name``, ``type``, ``source_id``, ``hostname``,
        ``rate_hz``, ``channels`` and ``format``, sorted by source_id.
    """
    out = []
    # A stream can answer through several resolve addresses; its uid is unique.
    unique = {info.uid(): info for info in pylsl.resolve_streams(wait_s)}
    for info in unique.values():
        out.append(
            {
                "name": info.name(),
                "type": info.type(),
                "source_id": info.source_id(),
                "hostname": info.hostname(),
                "rate_hz": info.nominal_srate(),
                "channels": info.channel_count(),
                "format": _FORMAT_NAMES.get(info.channel_format(), "unknown"),
            }
        )
    return sorted(out, key=lambda s: (s["source_id"], s["name"]))


def format_streams(streams: list[dict[str, Any]]) -> str:
    """Render :func:`list_streams` output as a table."""
    if not streams:
        return "no LSL streams visible"
    head = f"{'name':<28} {'type':<9} {'source_id':<34} {'host':<14} {'rate Hz':>8} {'ch':>4}"
    rows = [
        f"{s['name'][:28]:<28} {s['type'][:9]:<9} {s['source_id'][:34]:<34} "
        f"{s['hostname'][:14]:<14} {s['rate_hz']:>8g} {s['channels']:>4}"
        for s in streams
    ]
    return "\n".join([head, *rows])
