"""Read-only registry look-ups on the embedded default, without importing MLflow.

On one machine the MLflow registry is a SQLite file and its artifacts a local folder
(STACK.md). Scoring only needs to *read* it: which version an alias points at, a
version's tags, run id and folder. Importing MLflow and opening its SQLAlchemy store for
that was about half of a 10-row ``vigil score``'s start-up, so these reads go straight to
the SQLite file (read-only) and the bundle is loaded from the version's folder.

Anything unexpected (another backend, a schema this code does not know, a model whose
entry point is not the plain bundle's) makes :func:`current` or :meth:`load_bundle`
answer ``None``, and the caller goes through MLflow as before. Nothing here writes.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.modeling.bundle import ScoringBundle
from pipelines.settings import get_settings

#: The tables and columns read here (MLflow 3's SQL registry schema).
_NEEDED = {
    "registered_model_aliases": {"alias", "version", "name"},
    "model_versions": {"name", "version", "run_id", "storage_location", "status"},
    "model_version_tags": {"key", "value", "name", "version"},
    "registered_model_tags": {"key", "value", "name"},
    "registered_models": {"name"},
    "runs": {"run_uuid", "artifact_uri"},
}
#: The entry point of a plain bundle model (registry.log_bundle's default).
PLAIN_ENTRY_POINT = "pyfunc_model.py"


class NotInRegistry(LookupError):
    """The model, alias or version is not in the registry (MLflow raises its own)."""


@dataclass
class VersionRecord:
    """What scoring reads of a model version (the attributes of MLflow's ModelVersion
    that the registry functions use)."""

    name: str
    version: str
    run_id: str | None
    storage_location: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelRecord:
    """A registered model's name, tags and aliases (as MLflow's RegisteredModel)."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class LocalRegistry:
    """The registry in an MLflow SQLite file, read with the standard library.

    One read-only connection for all its reads: opening one costs ~3 ms here (SQLite
    parses MLflow's schema on each new connection), and a short ``vigil score`` made ~56
    reads, most of them :func:`open_registry`'s checks before it was cached."""

    def __init__(self, path: Path, workspace: bool) -> None:
        self.path = path
        self._workspace = workspace
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._conn is None:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                # Reads only, each its own statement: no transaction is left open, and
                # every read sees what other processes committed before it.
                self._conn = sqlite3.connect(
                    uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None
                )
            return self._conn.execute(sql, params).fetchall()

    def _scope(self, alias: str = "") -> str:
        """Only the default workspace (MLflow 3.17 adds a workspace column)."""
        prefix = f"{alias}." if alias else ""
        return f" AND {prefix}workspace = 'default'" if self._workspace else ""

    def get_model_version(self, name: str, version: str) -> VersionRecord:
        rows = self._query(
            "SELECT version, run_id, storage_location FROM model_versions "
            "WHERE name = ? AND version = ? AND current_stage != 'Deleted_Internal'"
            + self._scope(),
            (name, int(version)),
        )
        if not rows:
            raise NotInRegistry(f"no model version {name}/{version}")
        number, run_id, location = rows[0]
        tags = dict(
            self._query(
                "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?"
                + self._scope(),
                (name, int(number)),
            )
        )
        return VersionRecord(name, str(number), run_id, location, tags)

    def get_model_version_by_alias(self, name: str, alias: str) -> VersionRecord:
        rows = self._query(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?"
            + self._scope(),
            (name, alias),
        )
        if not rows:
            raise NotInRegistry(f"no alias {name}@{alias}")
        return self.get_model_version(name, str(rows[0][0]))

    def search_model_versions(self, filter_string: str) -> list[VersionRecord]:
        """Only MLflow's ``name='NAME'`` filter (the one the registry functions use)."""
        match = re.fullmatch(r"name='([^']*)'", filter_string.strip())
        if match is None:
            raise NotInRegistry(f"filter {filter_string!r} is not read locally")
        name = match.group(1)
        rows = self._query(
            "SELECT version FROM model_versions WHERE name = ? "
            "AND current_stage != 'Deleted_Internal'" + self._scope(),
            (name,),
        )
        return [self.get_model_version(name, str(v)) for (v,) in rows]

    def search_registered_models(self) -> list[ModelRecord]:
        models = {
            name: ModelRecord(name)
            for (name,) in self._query(
                "SELECT name FROM registered_models WHERE 1 = 1" + self._scope()
            )
        }
        for name, key, value in self._query(
            "SELECT name, key, value FROM registered_model_tags WHERE 1 = 1" + self._scope()
        ):
            if name in models:
                models[name].tags[key] = value
        for name, alias, version in self._query(
            "SELECT name, alias, version FROM registered_model_aliases WHERE 1 = 1" + self._scope()
        ):
            if name in models:
                models[name].aliases[alias] = str(version)
        return list(models.values())

    def model_folder(self, version: VersionRecord) -> Path | None:
        """The version's local artifact folder (None when it is not a local path)."""
        return _local_path(version.storage_location)

    def run_artifacts(self, run_id: str) -> Path | None:
        rows = self._query("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
        return _local_path(rows[0][0]) if rows else None

    def load_bundle(self, version: VersionRecord):
        """The bundle of a plain bundle model, loaded from its folder; None for anything
        else (a re-ranked model's own entry point, a remote artifact store)."""
        import yaml

        folder = self.model_folder(version)
        if folder is None or not (folder / "MLmodel").exists():
            return None
        flavor = yaml.safe_load((folder / "MLmodel").read_text()).get("flavors", {})
        pyfunc = flavor.get("python_function") or {}
        entry = Path(str(pyfunc.get("model_code_path", ""))).name
        artifacts = pyfunc.get("artifacts") or {}
        if entry != PLAIN_ENTRY_POINT or set(artifacts) != {"bundle"}:
            return None
        bundle_dir = folder / artifacts["bundle"]["path"]
        return ScoringBundle.load(bundle_dir) if bundle_dir.is_dir() else None

    def requirements(self, version: VersionRecord) -> str | None:
        folder = self.model_folder(version)
        path = folder / "requirements.txt" if folder else None
        return path.read_text() if path and path.exists() else None


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def open_registry(tracking_uri: str | None) -> LocalRegistry | None:
    """A :class:`LocalRegistry` for ``sqlite:///FILE`` when the file exists and has the
    tables this module reads; None otherwise (use MLflow)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(unquote(tracking_uri[len("sqlite:///") :]))
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    # The schema checks below ran ~42 reads per `vigil score`: keep the answer while the
    # file is the same file, unchanged (a migration changes its size or mtime).
    identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = str(path.resolve())
    known = _OPENED.get(key)
    if known is not None and known[0] == identity:
        return known[1]
    registry = _checked(path)
    if registry is not None:
        _OPENED[key] = (identity, registry)
    return registry


def _checked(path: Path) -> LocalRegistry | None:
    registry = LocalRegistry(path, workspace=False)
    try:
        columns: dict[str, set[str]] = {}
        for table in _NEEDED:
            columns[table] = {row[1] for row in registry._query(f"PRAGMA table_info({table})")}
    except sqlite3.Error:
        return None
    if any(not need <= columns[table] for table, need in _NEEDED.items()):
        return None
    registry._workspace = all("workspace" in columns[t] for t in _NEEDED if t != "runs")
    return registry


#: Registries whose schema was checked: resolved path -> (file identity, registry).
_OPENED: dict[str, tuple[tuple[int, int, int, int], LocalRegistry]] = {}


def current() -> LocalRegistry | None:
    """The local registry of the configured tracking URI (``MLFLOW_TRACKING_URI``, which
    ``VigilSettings.apply_environment`` sets), or None. The ``local_registry`` setting
    (``VIGIL_LOCAL_REGISTRY=0``) turns the direct reads off."""
    if not get_settings().local_registry:
        return None
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and hasattr(mlflow, "get_registry_uri"):
        # MLflow is loaded already: follow what it was told (mlflow.set_tracking_uri).
        tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    else:
        tracking = os.environ.get("MLFLOW_TRACKING_URI")
        registry = os.environ.get("MLFLOW_REGISTRY_URI") or tracking
    if registry != tracking:
        return None
    return open_registry(registry)
