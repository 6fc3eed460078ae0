"""The in-memory entity history of `vigil api` (no model needed): what a request sees,
batched writes, and segments other processes keep."""

from __future__ import annotations

import pandas as pd

from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.modeling.bundle import prepare_records
from pipelines.scoring.history import KeptHistory, LiveHistory
from pipelines.store import ResultsStore


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    return validate_batch(Batch(frame=frame, source="t"), SEQUENCE_SPEC).clean


def test_live_history_matches_the_store_and_picks_up_other_writers(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    spec = SEQUENCE_SPEC
    records = _clean(generate_card_sequences(n_cards=12, days=10, seed=2))
    past, rest = records.iloc[:-60], records.iloc[-60:]
    KeptHistory(store, spec).keep(
        prepare_records(spec, past).state, batch_id="train", source="train", only_recent=True
    )
    live = LiveHistory(store, spec, background=False)

    # Scored one at a time, kept in memory: nothing is written until a flush.
    appended, written = rest.iloc[:30], []
    for i in range(len(appended)):
        one = appended.iloc[[i]]
        seen = live.before(one)
        live.extend(prepare_records(spec, one, seen.frame).state)
    assert live.pending_rows == 30 and len(store.history_segment_ids(spec.name)) == 1
    assert live.flush() == 30 and live.pending_rows == 0
    written = store.history_segment_ids(spec.name)
    assert len(written) == 2 and live.refresh() == 0  # our own segment is not read back

    # What a request sees from memory is what the store gives batch scoring for it.
    probe = rest.iloc[[40]]
    from_memory = live.before(probe).frame
    from_store = KeptHistory(store, spec).before(probe).frame
    entity = probe["card_id"].iloc[0]
    columns = [spec.id_column, "timestamp", "ctx_history_count"]
    mine = from_memory[from_memory["card_id"] == entity][columns].reset_index(drop=True)
    kept = from_store[from_store["card_id"] == entity][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, kept, check_dtype=False)

    # Another process (a nightly batch run) keeps records: the next refresh loads them.
    other = rest.iloc[30:35]
    KeptHistory(store, spec).keep(
        prepare_records(spec, other, from_store).state, batch_id="night", source="night.csv"
    )
    assert live.refresh() == len(other)
    after = rest.iloc[35:]
    later = after[after["card_id"].isin(other["card_id"])].iloc[[0]]
    ids = set(live.before(later).frame[spec.id_column])
    same_card = other[other["card_id"] == later["card_id"].iloc[0]]
    assert len(same_card) and set(same_card[spec.id_column]) <= ids
    live.close()


def test_api_picks_up_a_new_champion_in_the_background_without_a_restart(tmp_path, monkeypatch):
    """Requests keep the loaded model while the registry is asked again; a promotion (the
    alias moves to v2) is served from the next look-up on."""
    from types import SimpleNamespace

    from pipelines.demo import DEMO_SPEC
    from pipelines.operations import api
    from pipelines.operations.api import Scorer

    champion = {"version": "1"}
    monkeypatch.setattr(
        api, "resolve_model",
        lambda reference: SimpleNamespace(name="m", version=champion["version"]),
    )  # fmt: skip
    loads = []

    def load(ref):
        loads.append(ref.version)
        return SimpleNamespace(spec=DEMO_SPEC)

    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    scorer = Scorer(store, "m", refresh_seconds=3600, load=load, background=False)
    assert scorer.current().version == "1"
    champion["version"] = "2"
    assert scorer.current().version == "1"  # not due for a look-up: no registry call
    scorer.refresh_seconds = 0
    assert scorer.current().version == "2" and loads == ["1", "2"]
    assert scorer.current().version == "2" and loads == ["1", "2"]  # loaded once


def test_a_flushed_segment_is_named_by_its_content():
    """A retried flush of the same records finds its segment kept; other records, or the
    same records with one value changed, make another one (dicts and lists included)."""
    from pipelines.scoring.history.writer import _digest

    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "when": pd.to_datetime(["2026-03-01 10:00", "2026-03-01 11:00"]),
            "amount": [12.5, 3.0],
            "merchant": ["shop", None],
        }
    )
    assert _digest(frame) == _digest(frame.copy())
    changed = frame.copy()
    changed.loc[1, "amount"] = 3.01
    assert _digest(changed) != _digest(frame)
    odd = frame.assign(extra=[{"k": 1}, [2]])
    assert _digest(odd) == _digest(odd.copy()) != _digest(odd.assign(extra=[{"k": 2}, [2]]))
