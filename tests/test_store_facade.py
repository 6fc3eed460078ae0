"""The store's shape: the facade's methods are its repositories' own, the package's
names resolve, and the vocabulary's values are the strings stored."""

from __future__ import annotations

import pipelines.store
from pipelines.store import ResultsStore
from pipelines.store.accounts import ROLES
from pipelines.store.cases import VERDICTS
from pipelines.store.facade import _Delegate
from pipelines.store.vocabulary import COUNTING_VERDICTS, LabelSource, Role, RunRole, Verdict


def test_every_store_method_is_a_repository_method(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    delegates = {n: a for n, a in vars(ResultsStore).items() if isinstance(a, _Delegate)}
    assert len(delegates) > 60
    for name, delegate in delegates.items():
        assert getattr(store, name) == getattr(getattr(store, delegate.repository), delegate.method)
    assert store.labels_frame.__func__ is type(store.labels).label_rows


def test_the_package_names_resolve():
    for name in pipelines.store.__all__:
        assert getattr(pipelines.store, name) is not None, name


def test_the_vocabulary_is_the_stored_strings():
    assert VERDICTS == ("fraud", "not_fraud", "unsure")
    assert ROLES == ("viewer", "analyst", "admin")
    assert set(COUNTING_VERDICTS) == {"fraud", "not_fraud"} and Verdict.UNSURE == "unsure"
    assert [s.value for s in LabelSource] == ["review", "import", "chargeback"]
    assert (RunRole.PRIMARY, RunRole.SHADOW) == ("primary", "shadow")
    assert f"{Role.ADMIN}" == "admin"
