"""A study's tidy tables on disk: one Parquet and one CSV file per level.

Columns: ``file``, ``participant``, ``session`` first; then the level's declared columns
(:data:`stimloop.loop.study_rows.COLUMNS`), so a table whose rows no recording holds yet
is still written, empty, with its columns; the session table's columns are the union of
its rows' (the report's figures; a figure a session lacks is empty). Types: a column of
only booleans is boolean, of only integers int64, of numbers float64, anything else
text. Missing values are nulls (empty CSV cells). Written with pyarrow (Parquet, and its
CSV writer, so both files hold the same values).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stimloop.dsp.errors import StimloopError
from stimloop.loop.study_rows import COLUMNS, KEY_COLUMNS


class StudyError(StimloopError):
    """A study cannot start or write: no recordings found, a bad pattern, an unusable
    output folder, pyarrow missing."""


_ARROW = {"bool": "bool_", "int": "int64", "float": "float64", "str": "string"}
#: The session table's own columns before the report's (text even when all empty).
SESSION_COLUMNS = {"status": "str", "error": "str", "damage": "str", "name": "str",
                   "prefix": "str"}  # fmt: skip


def _kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "float"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "float"
    return "str"


def table_columns(level: str, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The columns of a level's table and their kinds (``bool``/``int``/``float``/``str``)."""
    if level in COLUMNS:
        names = [*KEY_COLUMNS, *(c for c, _ in COLUMNS[level])]
        declared = dict(COLUMNS[level])
    else:
        names = [*KEY_COLUMNS, *SESSION_COLUMNS]
        declared = dict(SESSION_COLUMNS)
    seen = set(names)
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                names.append(k)
    out = []
    for name in names:
        values = [row.get(name) for row in rows]
        kind = declared.get(name) or ("str" if name in KEY_COLUMNS else _kind(values))
        if kind != "str" and _kind(values) == "str":
            kind = "str"  # a declared number that came as text stays readable
        out.append((name, kind))
    return out


def _pyarrow():
    try:
        import pyarrow
    except ImportError as exc:
        raise StudyError("pyarrow is not installed; install the study extra: "
                         "pip install 'stimloop[study]'") from exc  # fmt: skip
    return pyarrow


def to_arrow(level: str, rows: list[dict[str, Any]]):
    """The rows of one level as a ``pyarrow.Table``."""
    pa = _pyarrow()

    cols = table_columns(level, rows)
    arrays, fields_ = [], []
    for name, kind in cols:
        values = [row.get(name) for row in rows]
        if kind == "str":
            values = [None if v is None else str(v) for v in values]
        elif kind == "float":
            values = [None if v is None else float(v) for v in values]
        typ = getattr(pa, _ARROW[kind])()
        arrays.append(pa.array(values, type=typ))
        fields_.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields_))


def replace_file(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a new temporary file in its folder (``write(tmp)``), then
    rename it into place: a link planted at the path, or at a temporary name one could
    guess, is replaced, never written through. The file is its owner's only (0600), as
    the recordings it comes from are (``stream/files.py``).

    Raises
    ------
    StudyError
        The folder cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StudyError(f"cannot write {str(path)!r}: {exc}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_tables(tables: dict[str, list[dict[str, Any]]], out: str | Path) -> dict[str, str]:
    """Write ``<level>.parquet`` and ``<level>.csv`` for every level into ``out``.

    Returns
    -------
    dict of str to str
        ``"<level>.parquet"`` / ``"<level>.csv"`` -> path written.
    """
    _pyarrow()
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out = Path(out)
    written = {}
    for level, rows in tables.items():
        table = to_arrow(level, rows)
        for ext in ("parquet", "csv"):
            path = out / f"{level}.{ext}"
            write = pq.write_table if ext == "parquet" else pcsv.write_csv
            replace_file(path, lambda tmp, w=write, t=table: w(t, tmp))
            written[f"{level}.{ext}"] = str(path)
    return written


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """A written Parquet table back as rows (for tests and quick looks)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
