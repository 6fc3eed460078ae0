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

import pandas as pd

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
    name = str(path)
    errors: list[RowError] = []
    good: list[dict] = []
    for i, raw in enumerate(frame.to_dict(orient="records")):
        row_number = i + first_row
        row_errors: list[RowError] = []

        def bad(column: str, value: object, reason: str) -> None:
            row_errors.append(RowError(name, row_number, column, _text(value), reason))  # noqa: B023

        record_id = _text(raw.get("record_id")).strip()
        if not record_id:
            bad("record_id", raw.get("record_id"), "missing record id")
        elif len(record_id) > 256:
            bad("record_id", record_id[:40] + "...", "record id longer than 256 characters")
        verdict = VERDICT_WORDS.get(_text(raw.get("verdict")).strip().lower())
        if verdict is None:
            bad("verdict", raw.get("verdict"), "verdict must be fraud, not_fraud, unsure, 1 or 0")
        source = _text(raw.get("source", "")).strip().lower() or default_source
        if source not in SOURCES:
            bad("source", raw.get("source"), f"source must be one of {', '.join(SOURCES)}")
        known_text = _text(raw.get("known_at", "")).strip()
        known_at = now
        if known_text:
            parsed = pd.to_datetime(known_text, utc=True, errors="coerce")
            if pd.isna(parsed):
                bad("known_at", known_text, "not a date/time (ISO 8601, e.g. 2026-11-30T12:00Z)")
            elif parsed.to_pydatetime() > now:
                bad("known_at", known_text, "in the future: not known yet")
            else:
                known_at = parsed.to_pydatetime()
        if row_errors:
            errors.extend(row_errors)
            continue
        extra = {c: (_text(raw.get(c)).strip() or None) for c in OPTIONAL_TEXT}
        if dataset and not extra["dataset"]:
            extra["dataset"] = dataset
        for column, limit in (("analyst", 64), ("reason_code", 64), ("entity", 256)):
            if extra[column] and len(extra[column]) > limit:
                extra[column] = extra[column][:limit]
        # Without a known_at in the file, the key leaves time out: re-importing the same
        # file later must still write nothing.
        key_time = known_at.isoformat() if known_text else ""
        good.append(
            {
                "record_id": record_id,
                "verdict": verdict,
                "source": source,
                "known_at": known_at,
                **extra,
                "dedupe_key": dedupe_key(record_id, verdict, key_time, source, extra["dataset"]),
            }
        )
    columns = ["record_id", "verdict", "source", "known_at", *OPTIONAL_TEXT, "dedupe_key"]
    rows = pd.DataFrame(good, columns=columns)
    # The same row twice in one file is one label.
    rows = rows.drop_duplicates("dedupe_key").reset_index(drop=True)
    return ParsedLabels(rows=rows, errors=errors, rows_in=len(frame))


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
