"""Shared test set-up: one isolated state folder and one Prefect test harness per session.

Tests keep data tiny and epochs few; quality targets live in benchmarks/, not here.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest


def _memory_backed_tmpdir(root: str = "/dev/shm", need_bytes: int = 2 << 30) -> None:
    """Put the session's temporary files (state folder, SQLite stores, MLflow and Prefect
    databases, ``tmp_path``) in memory where the machine has room: SQLite syncs to disk on
    every commit, and creating an MLflow or Prefect database on disk takes seconds of
    waiting that test nothing. A ``TMPDIR`` you set wins; subprocesses inherit the choice."""
    if os.environ.get("TMPDIR") or not os.path.isdir(root):
        return
    try:
        if shutil.disk_usage(root).free < need_bytes:
            return
        base = Path(root) / "vigil-tests"
        base.mkdir(exist_ok=True)
    except OSError:
        return
    os.environ["TMPDIR"] = str(base)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


_memory_backed_tmpdir()
_STATE = Path(tempfile.mkdtemp(prefix="vigil-test-"))
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)
os.environ["VIGIL_HOME"] = str(_STATE / "home")
os.environ["VIGIL_PROGRESS"] = "log"
os.environ.pop("VIGIL_DATABASE_URL", None)
os.environ.pop("VIGIL_MLFLOW_TRACKING_URI", None)

from pipelines.settings import get_settings  # noqa: E402

get_settings.cache_clear()
get_settings().apply_environment()

import torch  # noqa: E402

# Under pytest-xdist each of the two workers gets one core; a lone process both.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# Small, fast detectors for tests of the pipeline (not of detection quality).
FAST_VAE = {"epochs": 4, "hidden_dims": [32, 16], "latent_dim": 4, "batch_size": 256}
FAST_GAN = {"epochs": 4, "batch_size": 256}


_TRAINED: dict[tuple, object] = {}


def demo_vae_bundle(rows: int = 1500, **options):
    """The pipeline tests' model: a fast VAE fitted on ``rows`` normal demo transactions
    (seed 1), as a scoring bundle. ``options`` override ``FAST_VAE``.

    Fitted once per session for each set of arguments (several modules ask for the same
    one); each caller gets its own copy, free to change it."""
    key = (rows, tuple(sorted(options.items())))
    if key not in _TRAINED:
        _TRAINED[key] = _fit_demo_vae_bundle(rows, **options)
    return copy.deepcopy(_TRAINED[key])


def _fit_demo_vae_bundle(rows: int, **options):
    from detectors import VAEDetector
    from pipelines.demo import DEMO_SPEC, generate_transactions
    from pipelines.modeling.bundle import ScoringBundle

    train = generate_transactions(rows, n_anomalies=0, seed=1)
    detector = VAEDetector(
        **{**FAST_VAE, **options}, categorical_features=DEMO_SPEC.categorical_features
    )
    detector.fit(train[DEMO_SPEC.feature_columns])
    return ScoringBundle(DEMO_SPEC, detector)


# The modules that take longest (measured on the 2-core machine, longest first). Under
# pytest-xdist (`make test` runs it with --no-loadscope-reorder) they are handed out
# first, so the two workers end together instead of one running a long module alone at
# the end; a module missing here only loses that head start.
_LONGEST_FIRST = (
    "tests/test_operations_flows.py",
    "tests/test_demo.py",
    "tests/test_nothing_left_behind.py",
    "tests/test_production_path.py",
    "tests/test_flows.py",
    "tests/test_cli.py",
    "tests/test_operations_realtime.py",
    "tests/test_feedback_every_kind.py",
    "tests/test_training_faults.py",
    "tests/detectors/test_detectors.py",
    "tests/test_benchmarks.py",
    "tests/test_review_casework.py",
    "tests/test_feedback_flows.py",
    "tests/test_payment_browser.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """On an xdist worker, the longest modules first (each module's tests keep their
    order, and every worker sorts alike, as xdist requires)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {module: i for i, module in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(scope="module", autouse=True)
def _quick_password_hashing(request):
    """argon2 at its lowest cost while a module's users are made and log in: at the real
    cost each hash and each log-in spends ~0.2 CPU s. A module that tests the cost itself
    (the log-in timing) sets ``REAL_PASSWORD_HASHING = True``."""
    if getattr(request.module, "REAL_PASSWORD_HASHING", False):
        yield
        return
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    from pipelines import accounts

    quick = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    patch = pytest.MonkeyPatch()
    patch.setattr(accounts, "_hasher", lambda: quick)
    accounts._dummy_hash.cache_clear()
    yield
    patch.undo()
    accounts._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (~13 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture
def unique_name() -> str:
    """A data-set name no other test uses, so registry assertions stay independent."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def postgres_url():
    """The real PostgreSQL for production-path tests, in a throwaway schema per test.

    Used when VIGIL_TEST_POSTGRES_URL is set (CI sets it); otherwise the test is skipped
    with the reason.
    """
    url = os.environ.get("VIGIL_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI"):
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    if not url:
        pytest.skip("no PostgreSQL configured: set VIGIL_TEST_POSTGRES_URL to run this test")
    import sqlalchemy as sa

    schema = f"vigil_test_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {url} not reachable: {exc.__class__.__name__}: {exc}")
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
