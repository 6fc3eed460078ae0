"""Loading batches (CSV, Parquet, SQL) and validating them against a spec.

Validation never drops a row silently: every row either comes out clean or goes to the
quarantine frame with the file, row, column, offending value and reason, so a run can
always report ``rows_in = rows_clean + rows_quarantined``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.intake.spec import DatasetSpec

QUARANTINE_COLUMNS = ["row_number", "record_id", "column", "value", "reason", "raw"]
#: Longest id the store keeps (``scores.record_id`` is VARCHAR(256)).
MAX_ID_CHARS = 256
#: Default bound on one text field kept in quarantine and flag snapshots.
MAX_FIELD_CHARS = 1000
_TIME_ZONE_SUFFIX = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$"


class DataSourceError(ValueError):
    """A batch that cannot be read or lacks required columns (the source is named)."""


@dataclass
class Batch:
    """A raw batch as read: every cell is kept as the source gave it."""

    frame: pd.DataFrame
    source: str
    # CSV rows are reported as file lines (header = line 1); other sources as row numbers.
    first_row_number: int = 1
    row_label: str = "row"
    #: Row number -> why its bytes were not valid UTF-8 (the row was read with U+FFFD).
    undecodable: dict[int, str] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Stable id of the batch content: the same data gives the same batch id."""
        digest = hashlib.sha256(row_hashes(self.frame))
        digest.update("|".join(map(str, self.frame.columns)).encode())
        return digest.hexdigest()[:16]


def row_hashes(frame: pd.DataFrame) -> bytes:
    """Each row's content hash as bytes: the same rows give the same bytes however the
    batch is cut into chunks (a streamed source's digest is its chunks' bytes in order)."""
    return pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes()


def is_sql_url(source: str) -> bool:
    return "://" in source and not Path(source).exists()


def read_batch(source: str | Path, *, table: str | None = None, query: str | None = None) -> Batch:
    """Read a CSV (optionally gzipped), a Parquet file or a SQL table/query.

    CSVs are read as text so that validation, not the parser, decides what a bad number is
    and can name the exact line and column.
    """
    source_str = str(source)
    if is_sql_url(source_str):
        return _read_sql(source_str, table=table, query=query)
    path = Path(source_str)
    if not path.exists():
        raise DataSourceError(f"{path}: file not found")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            return Batch(frame=frame.reset_index(drop=True), source=str(path))
        if ".csv" in suffixes or ".txt" in suffixes or ".tsv" in suffixes:
            sep = "\t" if ".tsv" in suffixes else ","
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sep)
            return Batch(frame=frame, source=str(path), first_row_number=2, row_label="line")
    except (ValueError, OSError) as exc:
        raise DataSourceError(f"{path}: cannot be read: {exc}") from exc
    raise DataSourceError(f"{path}: unknown file type (use .csv, .csv.gz, .tsv or .parquet)")


def _read_sql(url: str, *, table: str | None, query: str | None) -> Batch:
    import sqlalchemy as sa

    statement = sql_statement(url, table=table, query=query)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(statement, conn)
    except Exception as exc:  # noqa: BLE001 - any driver error becomes a named source error
        raise DataSourceError(f"{sql_source_name(url, table)}: {exc}") from exc
    finally:
        engine.dispose()
    return Batch(frame=frame, source=sql_source_name(url, table))


def sql_statement(url: str, *, table: str | None, query: str | None, order_by: str | None = None):
    """The SELECT of a SQL source: a whole table (in ``order_by`` order when given, so a
    re-read sees the rows in the same order) or the user's query as written."""
    import sqlalchemy as sa

    if (table is None) == (query is None):
        raise DataSourceError(f"{_redact(url)}: give exactly one of --table or --query")
    if query:
        return sa.text(query)
    statement = sa.select(sa.text("*")).select_from(sa.table(table))
    return statement.order_by(sa.column(order_by)) if order_by else statement


def sql_source_name(url: str, table: str | None) -> str:
    """How a SQL source is named in runs and errors (the password never shown)."""
    return f"{_redact(url)}#{table or 'query'}"


def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


@dataclass
class ValidationResult:
    clean: pd.DataFrame
    quarantined: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=QUARANTINE_COLUMNS)
    )
    rows_in: int = 0
    #: The source row number of each clean row (file line for CSV).
    clean_row_numbers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def rows_quarantined(self) -> int:
        return int(self.quarantined["row_number"].nunique()) if len(self.quarantined) else 0

    def error_summary(self, source: str, limit: int = 5) -> list[str]:
        """Human-readable lines: 'file line 7, column amount: reason'."""
        lines = []
        for row in self.quarantined.head(limit).itertuples():
            where = f"column {row.column}" if row.column else "row"
            lines.append(f"{source} {row.row_number}, {where}: {row.reason}")
        return lines


def _require_columns(batch: Batch, spec: DatasetSpec, *, require_label: bool = False) -> None:
    """A batch without a column the spec requires is refused whole, naming what it has."""
    frame = batch.frame
    required = list(spec.required_columns)
    if require_label and spec.label_column:
        required.append(spec.label_column)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataSourceError(
            f"{batch.source}: missing column(s) {missing} required by spec {spec.name!r} "
            f"(found: {_shown_columns(frame.columns)}){_delimiter_hint(frame.columns)}"
        )


@dataclass
class IdCheck:
    """Each row's id as text, which ids are missing, which repeat an earlier row of the
    batch (``first_seen``: the row number each repeated id was first at)."""

    id_text: pd.Series
    missing_id: pd.Series
    duplicated: pd.Series
    first_seen: dict


def check_ids(batch: Batch, spec: DatasetSpec, seen_ids: SeenIds | None = None) -> IdCheck:
    """Missing and duplicate ids of one batch (or chunk), the first occurrence kept.

    ``seen_ids`` carries ids across the chunks of one streamed batch and is updated here:
    chunks must be checked in file order, so this is the one sequential step of a
    partitioned run (its driver calls it before a chunk is dispatched)."""
    _require_columns(batch, spec)
    ids = batch.frame[spec.id_column]
    n = len(ids)
    row_numbers = np.arange(n) + batch.first_row_number
    id_text = ids.astype("string").str.strip()
    missing_id = id_text.isna() | (id_text == "")
    duplicated = id_text.duplicated(keep="first") & ~missing_id
    first_seen: dict = {}
    if duplicated.any():
        # Positions, not index labels: a streamed chunk's frame keeps the file's row index.
        first_rows = np.flatnonzero((~missing_id & ~duplicated).to_numpy())
        first_seen = dict(zip(id_text.iloc[first_rows], row_numbers[first_rows], strict=True))
    if seen_ids is not None:
        candidates = (~missing_id & ~duplicated).to_numpy()
        hashes = SeenIds.hash(id_text[candidates])  # once, for the lookup and the add
        earlier = seen_ids.first_rows_of_hashes(hashes)
        repeated = np.zeros(n, dtype=bool)
        repeated[np.flatnonzero(candidates)[earlier >= 0]] = True
        for index, first_row in zip(
            np.flatnonzero(candidates)[earlier >= 0], earlier[earlier >= 0], strict=True
        ):
            first_seen[id_text.iloc[index]] = int(first_row)
        duplicated |= repeated
        seen_ids.add_hashes(hashes[earlier < 0], row_numbers[candidates & ~repeated])
    return IdCheck(
        id_text=id_text, missing_id=missing_id, duplicated=duplicated, first_seen=first_seen
    )


def validate_batch(
    batch: Batch,
    spec: DatasetSpec,
    *,
    require_label: bool = False,
    seen_ids: SeenIds | None = None,
    ids_checked: IdCheck | None = None,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> ValidationResult:
    """Type the batch by the spec and split it into clean rows and quarantined rows.

    Quarantined (one entry per problem, the raw row kept as JSON): missing id, duplicate
    id within the batch (the first occurrence is kept), a numeric cell that does not parse,
    a label that is not 0/1, a time that does not parse or whose time zone differs from
    the rest of the batch, an id longer than the store keeps, a line that is not UTF-8.
    Empty numeric cells are allowed: the detector's encoder imputes them.

    ``seen_ids`` carries ids across the chunks of one streamed batch, so a duplicate in a
    later chunk is caught too. ``ids_checked``: the same check done already by
    :func:`check_ids` (a partitioned run checks ids on the driver, in file order, before
    chunks go to workers). Quarantined text is cut to ``max_field_chars`` and says so.
    """
    frame = batch.frame
    _require_columns(batch, spec, require_label=require_label)
    n = len(frame)
    row_numbers = np.arange(n) + batch.first_row_number
    problems: list[dict] = []
    bad = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, column: str | None, values: pd.Series | None, reason) -> None:
        idx = np.flatnonzero(mask)
        for i in idx:
            value = None if values is None else values.iloc[i]
            problems.append(
                {
                    "index": i,
                    "column": column,
                    "value": None if value is None or _is_missing(value) else str(value),
                    "reason": reason(i) if callable(reason) else reason,
                }
            )
        bad[idx] = True

    typed = pd.DataFrame(index=frame.index)
    ids = frame[spec.id_column]
    if ids_checked is None:
        ids_checked = check_ids(batch, spec, seen_ids)
    id_text, missing_id = ids_checked.id_text, ids_checked.missing_id
    duplicated, first_seen = ids_checked.duplicated, ids_checked.first_seen
    flag(missing_id.to_numpy(), spec.id_column, ids, "missing id")
    if batch.undecodable:
        undecodable = np.isin(row_numbers, list(batch.undecodable))
        flag(undecodable, None, None, lambda i: batch.undecodable[int(row_numbers[i])])
    too_long = (id_text.str.len() > MAX_ID_CHARS).fillna(False).to_numpy()
    flag(too_long, spec.id_column, ids, f"id longer than {MAX_ID_CHARS} characters")
    flag(
        duplicated.to_numpy(),
        spec.id_column,
        ids,
        lambda i: (
            f"duplicate id {id_text.iloc[i]!r} in batch "
            f"(first at {batch.row_label} {first_seen[id_text.iloc[i]]})"
        ),
    )
    typed[spec.id_column] = id_text.astype(object)

    context = spec.context
    context_numeric = (
        [c for c in (context.amount_column, context.latitude_column, context.longitude_column) if c]
        if context
        else []
    )
    numeric_columns = [*spec.numeric_features]
    numeric_columns += [c for c in context_numeric if c not in numeric_columns]
    for column in numeric_columns:
        raw = frame[column]
        parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
        # Only cells that came out missing but were not missing can be text that does not
        # parse: look at their text alone (turning a whole float column into strings to
        # find none was most of the validation's cost).
        unparsed = (parsed.isna() & raw.notna()).to_numpy(dtype=bool, copy=True)
        if unparsed.any():
            text = raw[unparsed].astype("string").str.strip()
            unparsed[unparsed] = (text != "").to_numpy(dtype=bool, na_value=False)
        unparsed |= np.isinf(parsed.to_numpy())
        flag(unparsed, column, raw, f"not a number in numeric column {column!r}")
        typed[column] = parsed.where(~unparsed)

    for column in spec.categorical_features:
        raw = frame[column]
        text = raw.astype("string").str.strip()
        typed[column] = text.where(text != "").astype(object).where(text.notna(), None)

    if spec.label_column and spec.label_column in frame.columns:
        raw = frame[spec.label_column]
        parsed = pd.to_numeric(raw, errors="coerce")
        invalid = raw.notna() & ~parsed.isin([0, 1])
        flag(invalid.to_numpy(), spec.label_column, raw, "label must be 0 or 1")
        typed[spec.label_column] = parsed.where(~invalid)

    carried = (spec.entity_column, *spec.secondary_entity_columns, *spec.raw_context_columns)
    for column in (*carried, *spec.display_only_columns):
        if column and column not in typed.columns and column != spec.time_column:
            text = frame[column].astype("string").str.strip()
            typed[column] = text.where(text != "").astype(object).where(text.notna(), None)
    if spec.is_sequence and spec.entity_column:
        raw = frame[spec.entity_column]
        missing_entity = typed[spec.entity_column].isna().to_numpy()
        flag(missing_entity, spec.entity_column, raw, "missing entity (sequence mode needs it)")
    if spec.time_column:
        raw = frame[spec.time_column]
        zone_mismatch, zone_reason = _time_zone_outliers(raw)
        flag(zone_mismatch, spec.time_column, raw, zone_reason)
        parsed = _parse_time(raw.where(~zone_mismatch))
        unparsed = parsed.isna() & raw.notna() & ~zone_mismatch
        flag(unparsed.to_numpy(), spec.time_column, raw, "time does not parse")
        if spec.is_sequence:
            flag(raw.isna().to_numpy(), spec.time_column, raw, "missing time (sequence mode)")
        typed[spec.time_column] = parsed

    quarantined = _quarantine_frame(problems, frame, row_numbers, id_text, max_field_chars)
    clean = typed.loc[~bad].reset_index(drop=True)
    return ValidationResult(
        clean=clean, quarantined=quarantined, rows_in=n, clean_row_numbers=row_numbers[~bad]
    )


def _time_zone_outliers(raw: pd.Series) -> tuple[np.ndarray, str]:
    """Rows whose time zone style (given or not) differs from the batch's majority.

    pandas refuses a column that mixes zone-aware and naive times as a whole; the few odd
    ones are quarantined instead so the rest is scored.
    """
    n = len(raw)
    if n == 0 or pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return np.zeros(n, dtype=bool), ""
    text = raw.astype("string").str.strip()
    present = (text.notna() & (text != "")).to_numpy()
    aware = _has_time_zone(text) & present
    naive = present & ~aware
    if not aware.any() or not naive.any():
        return np.zeros(n, dtype=bool), ""
    if aware.sum() <= naive.sum():
        return aware, "time has a time zone while the rest of the batch has none (mixed zones)"
    return naive, "time has no time zone while the rest of the batch has one (mixed zones)"


def _has_time_zone(text: pd.Series) -> np.ndarray:
    """Which times end in a zone (Z, UTC, +01:00), as a bool array (missing: False).

    Matched in Arrow (RE2, vectorised): pandas sends this pattern through Python's ``re``
    one row at a time, which cost about 1 s per 200k rows, twice per chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pa.array(text.array, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        values = pa.array(text.astype(object).to_numpy(), type=pa.string(), from_pandas=True)
    matched = pc.match_substring_regex(values, _TIME_ZONE_SUFFIX).fill_null(False)
    return matched.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _parse_time(raw: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw
    # Numbers (epoch times) only when every value is one: the first value tells cheaply
    # when they are not (parsing a column of date strings as numbers costs ~1 s per 1M).
    if not len(raw) or pd.to_numeric(raw.iloc[:1], errors="coerce").notna().all():
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all():
            return numeric
    aware = _has_time_zone(raw.astype("string").str.strip()).any()
    # Zone-aware times (with any mix of offsets) are compared in UTC.
    utc = bool(aware)
    # ISO 8601 parses vectorised (1.7M rows in ~1 s); only what it misses goes the slow way.
    try:
        parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601", utc=utc)
    except (ValueError, TypeError):
        parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]" if utc else None)
    retry = parsed.isna() & raw.notna()
    if retry.any():
        parsed = parsed.copy()
        parsed[retry] = [_parse_one_time(value, utc) for value in raw[retry]]
    return parsed


def _parse_one_time(value, utc: bool):
    """One value the vectorised parse missed; NaT when it does not parse at all."""
    try:
        return pd.to_datetime(value, utc=utc)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


class SeenIds:
    """Ids already met in earlier chunks of one batch, with the row each was first at.

    Kept as sorted 64-bit hashes in a few sorted runs (merged as they grow), so memory
    is 12 bytes per id (16 past row 2^31) and a lookup is a binary search per run. Runs
    stop merging at ``MAX_MERGED_IDS``: a merge briefly needs ~40 bytes per id merged, on a
    10M-row batch was a 300 MB jump in peak memory; capped, the jump stays ~80 MB and a
    lookup searches one more run per 2M ids.
    """

    MAX_MERGED_IDS = 2_000_000

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    @staticmethod
    def hash(ids: pd.Series) -> np.ndarray:
        """The ids' 64-bit hashes (what the index keeps); hash once, look up and add."""
        # categorize=False: ids are (nearly) unique, so factorizing them first is pure
        # cost; the hashes are the same either way.
        return pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), categorize=False)

    def first_rows(self, ids: pd.Series) -> np.ndarray:
        """Row number of each id's first occurrence, -1 where it is new."""
        return self.first_rows_of_hashes(self.hash(ids))

    def add(self, ids: pd.Series, rows: np.ndarray) -> None:
        self.add_hashes(self.hash(ids), rows)

    def first_rows_of_hashes(self, hashes: np.ndarray) -> np.ndarray:
        out = np.full(len(hashes), -1, dtype=np.int64)
        if not len(hashes):
            return out
        for keys, rows in self._runs:
            position = np.searchsorted(keys, hashes).clip(max=len(keys) - 1)
            hit = (keys[position] == hashes) & (out < 0)
            out[hit] = rows[position[hit]]
        return out

    def add_hashes(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and rows.max() < np.iinfo(np.int32).max:
            rows = rows.astype(np.int32)  # 12 bytes per id instead of 16
        self._runs.append((hashes[order], rows[order]))
        while (
            len(self._runs) > 1
            and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0])
            and len(self._runs[-2][0]) + len(self._runs[-1][0]) <= self.MAX_MERGED_IDS
        ):
            (keys_b, rows_b), (keys_a, rows_a) = self._runs.pop(), self._runs.pop()
            keys, rows = np.concatenate([keys_a, keys_b]), np.concatenate([rows_a, rows_b])
            order = np.argsort(keys, kind="stable")
            self._runs.append((keys[order], rows[order]))


def bound_text(value: str, limit: int) -> str:
    """Cut a long text and say so: a 10 MB field must not become 30 MB of flags."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... [truncated: {len(value):,} characters in total]"


def _shown_columns(columns: pd.Index, limit: int = 20) -> list[str]:
    shown = [bound_text(str(c), 80) for c in columns[:limit]]
    return shown + ([f"... {len(columns) - limit} more"] if len(columns) > limit else [])


def _delimiter_hint(columns: pd.Index) -> str:
    """A one-column header full of another delimiter is the usual cause of 'missing'."""
    if len(columns) != 1:
        return ""
    header = str(columns[0])
    for name, delimiter in (("semicolon", ";"), ("tab", "\t"), ("pipe", "|")):
        if header.count(delimiter) >= 1:
            return f"; the header looks {name}-separated, not comma-separated"
    return ""


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _quarantine_frame(
    problems: list[dict],
    frame: pd.DataFrame,
    row_numbers: np.ndarray,
    ids: pd.Series,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> pd.DataFrame:
    if not problems:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    rows = []
    for problem in problems:
        i = problem["index"]
        record, truncated = {}, {}
        for key, value in frame.iloc[i].items():
            value = None if _is_missing(value) else _jsonable(value)
            if isinstance(value, str) and len(value) > max_field_chars:
                truncated[str(key)] = len(value)
                value = bound_text(value, max_field_chars)
            record[str(key)] = value
        if truncated:
            record["_truncated"] = truncated  # column -> full length in characters
        record_id = ids.iloc[i]
        value = problem["value"]
        rows.append(
            {
                "row_number": int(row_numbers[i]),
                "record_id": None if _is_missing(record_id) else bound_text(str(record_id), 180),
                "column": problem["column"],
                "value": None if value is None else bound_text(value, max_field_chars),
                "reason": problem["reason"],
                "raw": json.dumps(record, default=str),
            }
        )
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS).sort_values("row_number", kind="stable")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return value
