"""Label files in and out: ``vigil labels import`` / ``vigil labels export``.

An import file (CSV or Parquet) has ``record_id`` and ``verdict`` (fraud / not_fraud /
unsure, or 1 / 0), optionally ``known_at`` (when the verdict became known; default: the
import time), ``source`` (review / import / chargeback; default import), ``analyst``,
``entity``, ``dataset``, ``reason_code``, ``note``. Each bad row is reported with the file,
its row number (the header is row 1 in a CSV) and the column; good rows are kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.spreadsheet import spreadsheet_safe
from pipelines.store.vocabulary import LabelSource, Verdict

VERDICT_WORDS = {
    "fraud": Verdict.FRAUD,
    "1": Verdict.FRAUD,
    "1.0": Verdict.FRAUD,
    "true": Verdict.FRAUD,
    "yes": Verdict.FRAUD,
    "not_fraud": Verdict.NOT_FRAUD,
    "not fraud": Verdict.NOT_FRAUD,
    "0": Verdict.NOT_FRAUD,
    "0.0": Verdict.NOT_FRAUD,
    "false": Verdict.NOT_FRAUD,
    "no": Verdict.NOT_FRAUD,
    "unsure": Verdict.UNSURE,
}
SOURCES = tuple(source.value for source in LabelSource)
OPTIONAL_TEXT = ("analyst", "entity", "dataset", "reason_code", "note")
_ALL_COLUMNS = ("record_id", "verdict", "source", "known_at", *OPTIONAL_TEXT)
EXPORT_COLUMNS = [
    "record_id",
    "verdict",
    "known_at",
    "source",
    "analyst",
    "dataset",
    "entity",
    "reason_code",
    "note",
    "case_id",
    "flag_id",
    "model_name",
    "model_version",
    "score",
    "threshold",
    "created_at",
]


class LabelFileError(ValueError):
    """The file as a whole cannot be read as labels (missing file, column or format)."""


@dataclass
class RowError:
    file: str
    row: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, row {self.row}, column {self.column!r}"
        return f"{where}: {self.reason} ({self.value!r})"


@dataclass
class ParsedLabels:
    rows: pd.DataFrame
    errors: list[RowError] = field(default_factory=list)
    rows_in: int = 0


def read_label_file(
    path: str | Path,
    *,
    default_source: str = LabelSource.IMPORT,
    dataset: str | None = None,
    now: datetime | None = None,
) -> ParsedLabels:
    """Read and validate a label file; returns the good rows (ready for the store) and one
    :class:`RowError` per problem found in a bad row."""
    path = Path(path)
    if not path.exists():
        raise LabelFileError(f"{path}: no such file")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            frame = pd.read_parquet(path)
            first_row = 1  # Parquet has no header line: row 1 is the first record
        elif ".csv" in suffix or suffix.endswith(".txt"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            first_row = 2  # the header is row 1, as a spreadsheet shows it
        else:
            raise LabelFileError(f"{path}: labels come as .csv or .parquet, not {suffix!r}")
    except (OSError, ValueError) as exc:
        if isinstance(exc, LabelFileError):
            raise
        raise LabelFileError(f"{path}: cannot read it: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("record_id", "verdict") if c not in frame.columns]
    if missing:
        raise LabelFileError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)} "
            "(a label file needs record_id and verdict)"
        )
    if default_source not in SOURCES:
        raise LabelFileError(f"source must be one of {SOURCES}, not {default_source!r}")
    now = now or datetime.now(UTC)
    rows, errors = _validate(
        frame,
        name=str(path),
        first_row=first_row,
        default_source=default_source,
        dataset=dataset,
        now=now,
    )
    return ParsedLabels(rows=rows, errors=errors, rows_in=len(frame))


def _validate(
    frame: pd.DataFrame,
    *,
    name: str,
    first_row: int,
    default_source: str,
    dataset: str | None,
    now: datetime,
) -> tuple[pd.DataFrame, list[RowError]]:
    """Check every column at once (a million rows in seconds, not a loop per row) and
    build the store's rows. Errors come in file order, a row's columns in the order
    record_id, verdict, source, known_at."""
    raw = {c: _text_column(frame[c]) if c in frame.columns else None for c in _ALL_COLUMNS}
    problems: list[tuple[str, pd.Series, pd.Series, str]] = []  # column, mask, value, reason

    record_id = raw["record_id"].str.strip()
    problems.append(("record_id", record_id == "", raw["record_id"], "missing record id"))
    too_long = record_id.str.len() > 256
    problems.append(
        ("record_id", too_long, record_id.str.slice(0, 40) + "...",
         "record id longer than 256 characters")
    )  # fmt: skip
    verdict = raw["verdict"].str.strip().str.lower().map(VERDICT_WORDS)
    problems.append(
        ("verdict", verdict.isna(), raw["verdict"],
         "verdict must be fraud, not_fraud, unsure, 1 or 0")
    )  # fmt: skip
    if raw["source"] is None:
        source = pd.Series(default_source, index=frame.index, dtype=object)
        problems.append(("source", pd.Series(False, index=frame.index), source, ""))
    else:
        source = raw["source"].str.strip().str.lower()
        source = source.mask(source == "", default_source)
        problems.append(
            ("source", ~source.isin(SOURCES), raw["source"],
             f"source must be one of {', '.join(SOURCES)}")
        )  # fmt: skip
    known_text = (
        pd.Series("", index=frame.index, dtype=object)
        if raw["known_at"] is None
        else raw["known_at"].str.strip()
    )
    given = known_text != ""
    parsed = _parse_times(known_text.where(given))
    unreadable = given & parsed.isna()
    future = given & ~unreadable & (parsed > pd.Timestamp(now))
    problems.append(
        ("known_at", unreadable, known_text,
         "not a date/time (ISO 8601, e.g. 2026-11-30T12:00Z)")
    )  # fmt: skip
    problems.append(("known_at", future, known_text, "in the future: not known yet"))

    bad = pd.Series(False, index=frame.index)
    found = []
    for order, (column, mask, value, reason) in enumerate(problems):
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            bad |= mask
            for i in np.flatnonzero(mask.to_numpy()):
                found.append((int(i), order, column, _text(value.iloc[i]), reason))
    errors = [
        RowError(name, i + first_row, column, value, reason)
        for i, _, column, value, reason in sorted(found, key=lambda e: (e[0], e[1]))
    ]

    keep = ~bad.to_numpy()
    known_at = parsed.where(given, pd.Timestamp(now)).dt.tz_convert(UTC)
    out = pd.DataFrame(
        {
            "record_id": record_id[keep],
            "verdict": verdict[keep].astype(object),
            "source": source[keep].astype(object),
            "known_at": known_at[keep],
        }
    )
    for column in OPTIONAL_TEXT:
        if raw[column] is None:
            out[column] = None
            continue
        text = raw[column][keep].str.strip()
        if column in _TEXT_LIMITS:  # cut while the text is Arrow's (C++), not per value
            text = text.str.slice(0, _TEXT_LIMITS[column])
        out[column] = text.where(text != "", None).astype(object)
    if dataset:
        out["dataset"] = out["dataset"].fillna(dataset)
    # Without a known_at in the file, the key leaves time out: re-importing the same
    # file later must still write nothing.
    key_time = pc.if_else(
        pa.array(given[keep].to_numpy()), _isoformat(out["known_at"]), pa.scalar("")
    )
    keys = dedupe_keys(out["record_id"], out["verdict"], key_time, out["source"], out["dataset"])
    out["dedupe_key"] = keys
    # The same row twice in one file is one label (the first one; hashed, not sorted).
    twice = pd.Index(keys).duplicated(keep="first")
    rows = out.loc[~twice] if twice.any() else out
    return rows.reset_index(drop=True), errors


#: Optional texts cut to what the store's columns hold.
_TEXT_LIMITS = {"analyst": 64, "reason_code": 64, "entity": 256}


def _parse_times(text: pd.Series) -> pd.Series:
    """UTC times from text: ISO 8601 in one vectorised pass, anything else pandas reads
    (e.g. ``01/03/2026``) value by value; NaT where unreadable."""
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    retry = text.notna() & parsed.isna()
    if retry.any():
        parsed = parsed.astype(object)
        parsed[retry] = [pd.to_datetime(t, utc=True, errors="coerce") for t in text[retry]]
        parsed = pd.to_datetime(parsed, utc=True)
    return parsed


def _isoformat(times: pd.Series) -> pa.Array:
    """``datetime.isoformat()`` of each UTC time (``2026-01-02T00:00:00+00:00``, with
    ``.ffffff`` only when there are microseconds), as the dedupe key has always spelt it;
    written by Arrow in C++."""
    micros = pa.array(
        times.dt.tz_convert(UTC).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    )
    seconds = pc.cast(micros, pa.timestamp("s"), safe=False)
    whole = pc.equal(pc.cast(seconds, pa.timestamp("us")), micros)
    text = pc.if_else(whole, pc.cast(seconds, pa.string()), pc.cast(micros, pa.string()))
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "+00:00", "")


def dedupe_keys(
    record_id: pd.Series,
    verdict: pd.Series,
    known_at: pd.Series | pa.Array,
    source: pd.Series,
    dataset: pd.Series,
) -> list[str]:
    """:func:`dedupe_key` of every row (the text joined by Arrow, hashed one by one)."""
    parts = [
        pa.array(part.astype(str), type=pa.string()) if isinstance(part, pd.Series) else part
        for part in (record_id, verdict, known_at, source, dataset.fillna(""))
    ]
    joined = pc.binary_join_element_wise(*parts, "\x1f").cast(pa.binary())
    sha = hashlib.sha256
    return [sha(t).hexdigest() for t in joined.to_pylist()]


def dedupe_key(
    record_id: str, verdict: str, known_at: str, source: str, dataset: str | None
) -> str:
    text = "\x1f".join([record_id, verdict, known_at, source, dataset or ""])
    return hashlib.sha256(text.encode()).hexdigest()


def write_label_export(rows: pd.DataFrame, out: str | Path) -> Path:
    """One row per label row (the whole history, oldest first) as CSV or Parquet."""
    out = Path(out)
    frame = spreadsheet_safe(rows[[c for c in EXPORT_COLUMNS if c in rows.columns]])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    elif out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        raise LabelFileError(f"{out}: export to .csv or .parquet, not {out.suffix!r}")
    return out


def _text_column(values: pd.Series) -> pd.Series:
    """:func:`_text` of a whole column, as pandas text (Arrow-backed, so the string
    methods run in C++): text columns (a CSV, Parquet strings) at once, other columns
    (Parquet's numbers) value by value."""
    if pd.api.types.is_string_dtype(values.dtype) and (
        values.dtype != object
        or pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    ):
        return values.fillna("").astype("str")
    return values.map(_text).astype("str")


def _text(value: object) -> str:
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
