"""Typed settings: the one place configuration comes from.

Everything is read from ``VIGIL_*`` environment variables (or a ``.env`` file) so the
embedded default (SQLite + local MLflow + ephemeral Prefect, all under one state folder)
switches to production by settings alone.
"""

from __future__ import annotations

import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DriftPolicy(BaseModel):
    """When drift watch raises an alarm (``VIGIL_DRIFT__PSI_ALARM=0.3`` and the like)."""

    psi_alarm: float = Field(default=0.2, gt=0, description="Score PSI at or above: alarm.")
    ks_alpha: float = Field(default=0.001, gt=0, lt=1, description="Score KS test level.")
    min_effect: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="KS distance / total-variation distance a drift must reach to count.",
    )
    flag_rate_alpha: float = Field(
        default=0.001, gt=0, lt=1, description="Two-sided level of the flag-rate control limit."
    )
    feature_fdr: float = Field(
        default=0.01, gt=0, lt=1, description="False-discovery rate across per-feature tests."
    )
    unseen_share_alarm: float = Field(
        default=0.01, ge=0, lt=1, description="Share of rows with an unseen category: alarm."
    )
    min_rows: int = Field(default=30, ge=1, description="Fewer scored rows: no distribution tests.")

    model_config = {"extra": "forbid"}  # a misspelt key is an error, not a silent default


class VigilSettings(BaseSettings):
    """Where state lives and which services to talk to."""

    # Nested settings: VIGIL_DRIFT__PSI_ALARM=0.3 (or VIGIL_DRIFT='{"psi_alarm": 0.3}').
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    home: Path = Field(default=Path(".vigil"), description="State folder for the embedded default.")
    database_url: str | None = Field(
        default=None, description="Results store SQLAlchemy URL; default SQLite under home."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default SQLite under home."
    )
    mlflow_experiment: str = "vigil"
    score_chunk_size: int = Field(
        default=50_000,
        gt=0,
        description="Rows per scoring chunk (one commit each, the unit a re-run resumes "
        "from); per-chunk costs (a transaction, the lease) fade at this size.",
    )
    score_threads: int | None = Field(
        default=1,
        gt=0,
        description="Threads scoring computes on: torch's, where the model loaded torch, "
        "and numpy's BLAS pool for the numpy forward (None: each library's default, one "
        "per core). The default 1: the forward's matrices are too small to split (a "
        "second BLAS thread doubled the CPU of a run for no gain in time), and the other "
        "core is left to the database taking the chunks.",
    )
    numpy_forward: bool = Field(
        default=True,
        description="Score a saved VAE with numpy (no torch import: seconds less "
        "start-up per command) where its bundle has weights.npz; tested equal to the torch "
        "forward. False (VIGIL_NUMPY_FORWARD=0): always the torch detector. Models without "
        "weights.npz, other detectors and non-CPU devices use torch either way.",
    )
    score_runner: Literal["local", "dask"] = Field(
        default="local",
        description="Where `vigil score` scores: this process (local) or a Dask cluster "
        "through prefect-dask (dask; runs as the Prefect score flow).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Dask scheduler for the dask runner (tcp://HOST:8786); None starts a "
        "LocalCluster of dask_workers processes for each run (tens of seconds of start-up: "
        "the cluster, its workers' imports, Prefect's temporary API).",
    )
    dask_workers: int = Field(
        default=2, gt=0, description="LocalCluster worker processes (one thread each)."
    )
    max_reasons: int = Field(default=3, gt=0, description="Top reasons stored per flag.")
    run_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A scoring run whose process sent no heartbeat for this long is taken "
        "over by the next run of the same batch.",
    )
    max_field_chars: int = Field(
        default=1000,
        gt=0,
        description="Longest text kept per field in flag snapshots, reasons and quarantine.",
    )

    # Review app (`vigil review`)
    review_host: str = Field(default="127.0.0.1", description="Address the review app binds.")
    review_port: int = Field(default=8765, description="Port of the review app.")
    review_secure_cookies: bool = Field(
        default=False,
        description="Mark cookies Secure always (they are Secure anyway on a request that came "
        "over HTTPS).",
    )
    review_trust_proxy_headers: bool = Field(
        default=False,
        description="Believe X-Forwarded-Proto and X-Forwarded-For (the scheme and client "
        "address a reverse proxy saw); set it only when a proxy in front always sets them.",
    )
    review_session_hours: float = Field(default=12.0, gt=0, description="Login lifetime.")
    retention_snapshot_days: int | None = Field(
        default=None,
        ge=1,
        description="Days after a case is closed when its flags' record snapshots (the "
        "copy of card data shown to analysts) are removed by `vigil retention apply` and "
        "the nightly job; verdicts, reasons and the audit trail stay. None: kept forever.",
    )
    review_claim_minutes: float = Field(
        default=15.0, gt=0, description="How long a claimed item stays locked to its analyst."
    )
    review_login_attempts: int = Field(
        default=5,
        gt=0,
        description="Failed logins for one user name from one address within 5 minutes "
        "before that address is refused for that user.",
    )
    review_login_attempts_per_address: int = Field(
        default=20,
        gt=0,
        description="Failed logins from one address, any user names, within 5 minutes before "
        "the address is refused.",
    )
    review_login_attempts_per_account: int = Field(
        default=100,
        gt=0,
        description="Failed logins for one user name from all addresses within an hour before "
        "browsers that never signed in as that user are refused; keep it above what one "
        "address can reach (12 x review_login_attempts).",
    )
    review_secret_key: SecretStr | None = Field(
        default=None,
        description="Key that signs flash messages and device cookies; set it when several "
        "app processes serve one site (default: a random key per process).",
    )

    progress: Literal["auto", "bar", "log"] = Field(
        default="auto",
        description="How long work shows progress: a bar on a terminal, log lines "
        "elsewhere (auto), or always one of the two.",
    )
    local_registry: bool = Field(
        default=True,
        description="On the embedded default, read the MLflow registry's SQLite file "
        "directly (no MLflow import per command); False: always through MLflow.",
    )
    health_to_mlflow: Literal["auto", "now", "deferred"] = Field(
        default="auto",
        description="When a scoring run's health is logged to MLflow as its own run: now "
        "(inside `vigil score`), or deferred (queued under the state folder and logged by "
        "the next command that opens MLflow: `vigil models`, `vigil train`, `vigil "
        "promote`, the schedules). auto: deferred on a local tracking store (the embedded "
        "default, where opening MLflow costs a short command most of its time), now on a "
        "tracking server. The results store has the health at once either way.",
    )
    # -- feedback
    feedback_min_reviewed: int = Field(
        default=30, gt=0, description="Labelled scored records a precision threshold needs."
    )
    feedback_min_scored: int = Field(
        default=1000, gt=0, description="Scored records a budget or FPR threshold needs."
    )
    feedback_min_labels: int = Field(
        default=20, gt=0, description="Frauds (and not-frauds) the re-ranker needs to train."
    )
    feedback_uncertainty_share: float = Field(
        default=0.1,
        ge=0,
        le=0.9,
        description="Share of each batch's review queue a labelled model fills with the "
        "records below its line that it is least sure of (their own lane in the queue), so "
        "few labels are chosen where they teach it most; 0: none.",
    )
    feedback_linked_share: float = Field(
        default=0.0,
        ge=0,
        le=0.9,
        description="Share of each batch's review queue a labelled model fills with records "
        "below its line that paid at a terminal or merchant with recently confirmed frauds "
        "(their own lane, reason explore_linked): unsupervised models cannot see a "
        "compromised terminal, so its other payments reach analysts only this way; 0 (the "
        "default: no gain measured yet on the handbook replay): none.",
    )
    feedback_exploration_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of the challenger's own flags (records the champion did not flag) "
        "that its shadow runs send to the review queue, so the challenger's catches get "
        "verdicts too and promotion evidence does not favour the champion; 0: none.",
    )

    # -- real-time scoring (`vigil api`)
    api_torch_threads: int = Field(
        default=1,
        gt=0,
        description="Torch threads of `vigil api`: one record is too small to split, and "
        "more threads than cores only contend with the server's own.",
    )
    api_running_state: bool = Field(
        default=True,
        description="`vigil api` scores a sequence model from per-card and per-merchant "
        "running state (a few numbers each, updated per payment) where it covers the "
        "model's context; False (VIGIL_API_RUNNING_STATE=0): always from kept rows.",
    )
    api_state_url: str | None = Field(
        default=None,
        description="redis://host:port/db: the running state lives in Redis, shared by "
        "every `vigil api` process pointing at it (several behind a load balancer); "
        "unset: in the process.",
    )
    api_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Longest delay before records scored by `vigil api` are kept in the "
        "store as entity history (what a crash can lose).",
    )

    # -- drift watch
    drift: DriftPolicy = Field(
        default_factory=DriftPolicy,
        description="When a scoring run's drift watch alarms (VIGIL_DRIFT__<FIELD>).",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'vigil.db'}"

    @property
    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def defers_tracking(self) -> bool:
        """Whether short commands queue their MLflow runs (``health_to_mlflow``)."""
        if self.health_to_mlflow != "auto":
            return self.health_to_mlflow == "deferred"
        return urlparse(self.resolved_mlflow_uri).scheme in ("", "sqlite", "file")

    @property
    def artifact_root(self) -> Path:
        return self.home_dir / "mlartifacts"

    def apply_environment(self) -> None:
        """Export the offline defaults Prefect and MLflow read from the environment.

        Called before Prefect or MLflow is imported; values a user already set win.
        """
        self.home_dir.mkdir(parents=True, exist_ok=True)
        defaults = {
            "PREFECT_HOME": str(self.home_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "GIT_PYTHON_REFRESH": "quiet",
        }
        for key, value in defaults.items():
            os.environ.setdefault(key, value)
        # MLflow follows the settings, never a stale value left in the shell.
        os.environ["MLFLOW_TRACKING_URI"] = self.resolved_mlflow_uri
        if self.mlflow_tracking_uri is None:
            relocate_state_folder(self.home_dir)


#: Where a state folder last was (absolute path), kept inside it.
HOME_MARKER = "home.path"
#: Columns of MLflow's tracking/registry schema that hold artifact locations.
_MLFLOW_LOCATION_COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "model_versions": ("source", "storage_location"),
    "logged_models": ("artifact_location",),
}


def relocate_state_folder(home: Path) -> bool:
    """Make a moved or copied state folder work where it is now.

    MLflow keeps absolute artifact locations (experiment, runs, model versions); when the
    folder was moved or copied since it was last used, those locations are rewritten from
    the old folder to this one, so models load from the new place and nothing is written
    back into the old one. Returns True when something was rewritten."""
    marker = home / HOME_MARKER
    database = home / "mlflow.db"
    before = marker.read_text().strip() if marker.exists() else None
    here = str(home)
    if before == here:
        return False
    moved = False
    if before and database.exists():
        with sqlite3.connect(database) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            for table, columns in _MLFLOW_LOCATION_COLUMNS.items():
                if table not in tables:
                    continue
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column not in present:
                        continue
                    for old, new in ((Path(before).as_uri(), Path(here).as_uri()), (before, here)):
                        changed = conn.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                            f"WHERE substr({column}, 1, ?) = ?",
                            (new, len(old) + 1, len(old), old),
                        ).rowcount
                        moved = moved or changed > 0
    marker.write_text(here + "\n")
    return moved


@lru_cache(maxsize=1)
def get_settings() -> VigilSettings:
    """Settings for this process (cached; tests clear the cache after changing env)."""
    return VigilSettings()
