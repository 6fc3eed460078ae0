"""One payment scored from its card's running state: the real-time path of ``vigil api``.

For a sequence model whose context the running state covers (every context option,
those `vigil spec init` proposes included: :func:`detectors.context.running.unsupported`
names any it would not) and whose network the numpy forward
reproduces (:class:`detectors.numpy_sequence.NumpySequenceVAE`), a payment costs a few
dictionary look-ups and small array products: its values typed without a frame, its
context features from the card's and merchant's running numbers, its window from the
card's last model rows, the score from the numpy forward. Reasons (only for flagged
payments) and the record kept for the store are what batch scoring gives (a test scores
a stream one payment at a time and as one batch and compares every score and reason).

Where the state is: in the process by default; with ``state_url`` (``redis://...``) in
Redis, shared by every process pointing at it (see
:mod:`pipelines.scoring.entity_state.stores`). Either way the state starts from the
store's kept history, and the payments scored here go back to it in batches.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from detectors.context import PREFIX
from detectors.context.running import RunningContext, time_seconds, unsupported
from detectors.numpy_sequence import NumpySequenceVAE
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.intake.records import record_layout, typed_record
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.entity_state import (
    CardState,
    HistoryWriter,
    MemoryStateStore,
    RedisStateStore,
    kept_frame,
    rebuild,
)
from pipelines.scoring.history import context_signature
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)

#: Times a payment is computed again when another process updated its card first.
_RETRIES = 20


def why_not_stateful(bundle: ScoringBundle) -> str | None:
    """Why ``bundle`` is scored from kept rows instead of the running state (None: it is
    scored from the running state)."""
    config = bundle.spec.context
    if config is None:
        return "a tabular model needs no entity state"
    missing = unsupported(config)
    if missing:
        return f"the running state does not compute {', '.join(missing)}"
    if NumpySequenceVAE.from_detector(bundle.detector) is None:
        return f"no numpy forward for {type(bundle.detector).__name__}"
    return None


class StatefulScorer:
    """Scores payments from running entity state (see the module docstring)."""

    def __init__(
        self,
        bundle: ScoringBundle,
        store: ResultsStore,
        *,
        state_url: str | None = None,
        flush_seconds: float = 1.0,
        background: bool = True,
        max_entities: int = 1_000_000,
        rebuild_state: bool = True,
        previous: StatefulScorer | None = None,
    ) -> None:
        """``previous``: the scorer of the model this one replaces (a new champion); its
        state and writer carry on where they cover this model (same context, windows no
        longer), so nothing scored since the last flush is missed."""
        reason = why_not_stateful(bundle)
        if reason is not None:
            raise ValueError(reason)
        self.bundle, self.spec = bundle, bundle.spec
        self.config = self.spec.context
        self.signature = context_signature(self.spec)
        self.running = RunningContext(self.config)
        self._layout = record_layout(self.spec)
        self.model = NumpySequenceVAE.from_detector(bundle.detector)
        self.model_columns = list(self.model.feature_names_in_)
        self.keep_steps = max(self.model.sequence_length - 1, 0)
        self.keep_recent = max(self.keep_steps, 8)
        self._history_count = f"{PREFIX}history_count"
        self._raw_only = [
            c for c in [self.spec.id_column, *self.config.raw_columns]
            if c not in self.spec.feature_columns
        ]  # fmt: skip
        horizon = self.config.history_seconds
        self.handed_over = False
        if previous is not None and self._continues(previous):
            self.state, self.writer = previous.state, previous.writer
            self.rebuilt_entities = 0
            previous.handed_over = True
            return
        if previous is not None:
            previous.writer.flush()  # the rebuild reads what it scored
        if state_url:
            prefix = f"vigil:{self.spec.name}:{self.signature}"
            self.state: MemoryStateStore | RedisStateStore = RedisStateStore(
                state_url, prefix, horizon
            )
        else:
            self.state = MemoryStateStore(horizon, max_entities=max_entities)
        self.rebuilt_entities = 0
        if rebuild_state:
            self._rebuild(store)
        self.writer = HistoryWriter(
            store, self.spec, flush_seconds=flush_seconds, background=background
        )

    def _continues(self, previous: StatefulScorer) -> bool:
        return (
            previous.signature == self.signature
            and previous.model_columns == self.model_columns
            and previous.keep_steps >= self.keep_steps
        )

    def _rebuild(self, store: ResultsStore) -> None:
        """Start from the kept history (Redis: only when no process has started it)."""
        if isinstance(self.state, RedisStateStore) and not self.state.is_empty():
            return
        cards, keys = rebuild(
            kept_frame(store, self.spec),
            self.spec,
            self.running,
            model_columns=self.model_columns,
            steps_kept=self.keep_steps,
        )
        if isinstance(self.state, RedisStateStore):
            self.state.put_many(cards, keys)
        else:
            for entity, card in cards:
                self.state.put(entity, card)
            for key, state in keys:
                self.state.put_key(key, state)
        self.rebuilt_entities = len(cards)

    # -- a request ---------------------------------------------------------------------

    def score(self, records: list[dict[str, Any]], *, append_history: bool = True) -> dict:
        """Results (id, score, is_anomaly, reasons) and rejected records of a request."""
        typed = [typed_record(r, self.spec, self._layout) for r in records]
        ids = [t[self.spec.id_column] for t in typed if t is not None]
        rejected: list[dict] = []
        if any(t is None for t in typed) or len(set(ids)) != len(ids):
            typed, rejected = self._validated(records)
        scored = [self._one(t, append_history) for t in typed]
        return {
            "results": [result for result, _ in scored],
            "rejected": rejected,
            "history_rows": int(sum(earlier for _, earlier in scored)),
        }

    def _validated(self, records: list[dict]) -> tuple[list[dict], list[dict]]:
        """The full validator's clean records (as dicts) and rejections."""
        batch = Batch(frame=pd.DataFrame(records), source="api", row_label="record")
        validated = validate_batch(batch, self.spec)
        rejected = [
            {"record": int(r.row_number) - 1, "column": r.column, "reason": r.reason}
            for r in validated.quarantined.itertuples(index=False)
        ]
        clean = validated.clean.astype(object).where(validated.clean.notna(), None)
        return clean.to_dict(orient="records"), rejected

    def _one(self, record: dict[str, Any], append_history: bool) -> tuple[dict, float]:
        """One record's result, and how many earlier records of its entity it read."""
        config, spec = self.config, self.spec
        result: dict = {}
        entity = str(record[config.entity_column])
        secondary = {
            c: None if _missing(record.get(c)) else str(record[c])
            for c in config.secondary_entity_columns
        }
        seconds = time_seconds(record[config.time_column])
        record_id = str(record[spec.id_column])
        for _ in range(_RETRIES):
            loaded = self.state.load(entity, secondary, self._new_card)
            answered = next((r for i, r in loaded.card.recent if i == record_id), None)
            if answered is not None:  # a re-sent record: the same answer, counted once
                if isinstance(self.state, RedisStateStore):
                    self.state.release()
                return dict(answered), 0.0
            card = loaded.card
            features = self.running.step(
                record, card.context, loaded.secondary, keep=append_history
            )
            row = [
                features[name] if name in features else _model_value(record.get(name))
                for name in self.model_columns
            ]
            previous = self._window(card, seconds)
            current = self.model.rows.transform([row])
            encoded = np.concatenate([previous, current]) if len(previous) else current
            score = self.model.score(encoded, len(previous))
            if not append_history:
                if isinstance(self.state, RedisStateStore):
                    self.state.release()
                break
            card.steps.append((seconds, row))
            card.encoded.append(current[0])
            if len(card.steps) > 1 and card.steps[-2][0] > seconds:
                order = sorted(range(len(card.steps)), key=lambda i: card.steps[i][0])
                card.steps = [card.steps[i] for i in order]
                card.encoded = [card.encoded[i] for i in order]
            drop = max(len(card.steps) - self.keep_steps, 0)
            del card.steps[:drop], card.encoded[:drop]
            result = self._result(record_id, score, encoded, len(previous), record, row)
            card.recent.append((record_id, result))
            del card.recent[: max(len(card.recent) - self.keep_recent, 0)]
            if self.state.commit(loaded):
                self.writer.add(self._kept_row(record, row))
                break
        else:
            raise RuntimeError(f"entity {entity!r} kept changing under this payment")
        if not append_history:
            result = self._result(record_id, score, encoded, len(previous), record, row)
        return result, features[self._history_count]

    def _result(self, record_id, score, encoded, present, record, row) -> dict:
        flagged = score > self.bundle.threshold
        reasons: list[dict] = []
        if flagged:
            reasons = self._reasons(record, row, encoded, present, score)
        return {
            "id": record_id,
            "score": float(score),
            "is_anomaly": bool(flagged),
            "reasons": reasons,
        }

    def _new_card(self) -> CardState:
        return CardState(self.running.new_entity())

    def _window(self, card: CardState, seconds: float) -> np.ndarray:
        """The encoded model rows of the card the window of a record at ``seconds``
        holds (oldest first); each row is encoded once, when it is scored."""
        if card.encoded_for is not self.model or len(card.encoded) != len(card.steps):
            # Loaded from the store or Redis, or encoded for the model this one replaced.
            rows = [row for _, row in card.steps]
            card.encoded = list(self.model.rows.transform(rows)) if rows else []
            card.encoded_for = self.model
        horizon = self.model.history_seconds
        since = -math.inf if horizon is None else seconds - float(horizon)
        chosen = [i for i, (t, _) in enumerate(card.steps) if since <= t <= seconds]
        chosen = chosen[len(chosen) - self.keep_steps :] if self.keep_steps else []
        if not chosen:
            return np.empty((0, self.model.rows.width), dtype=np.float32)
        return np.stack([card.encoded[i] for i in chosen])

    def _kept_row(self, record: dict, row: list) -> dict:
        """What batch scoring keeps of a record: id, raw columns, its features."""
        kept = {c: record.get(c) for c in self._raw_only}
        kept.update(zip(self.model_columns, row, strict=True))
        return kept

    def _reasons(self, record, row, encoded, present, score) -> list[dict]:
        contributions = self.model.contributions(encoded, present)
        values = dict(zip(self.model_columns, row, strict=True))
        for column in self.config.raw_columns:  # the merchant a card is new to, ...
            if column not in values:
                values[column] = record.get(column)
        features = _OneRow(values)
        frame = _OneRow(dict(zip(self.model_columns, contributions.tolist(), strict=True)))
        reasons = self.bundle.reasons(features, frame, np.array([score]))[0]
        return json.loads(json.dumps(reasons, default=str))

    # -- lifetime ------------------------------------------------------------------------

    def describe(self) -> dict:
        """What /health says about the state."""
        out: dict[str, Any] = {"kind": type(self.state).__name__}
        if isinstance(self.state, MemoryStateStore):
            out.update(entities=len(self.state.cards), keys=len(self.state.keys))
        out["pending_rows"] = self.writer.pending_rows
        return out

    def close(self) -> None:
        if self.handed_over:
            return  # the state and writer live on in the scorer that replaced this one
        self.writer.close()
        if isinstance(self.state, RedisStateStore):
            self.state.close()


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and value != value


def _model_value(value: Any) -> Any:
    """A raw feature's value as the encoder reads it (missing as None)."""
    return None if _missing(value) else value


class _OneRow:
    """One row as the reasons read a frame (``columns``, ``frame[name].to_numpy()``,
    ``frame.to_numpy()``): two DataFrames per flagged payment cost more than the rest of
    its scoring."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self.columns = list(values)

    def __getitem__(self, name: str) -> _OneValue:
        return _OneValue(self._values[name])

    def to_numpy(self, dtype=None) -> np.ndarray:
        return np.array([list(self._values.values())], dtype=dtype)


class _OneValue:
    def __init__(self, value: Any) -> None:
        self._value = value

    def to_numpy(self, dtype=None) -> np.ndarray:
        out = np.empty(1, dtype=dtype if dtype is not None else object)
        out[0] = self._value
        return out
