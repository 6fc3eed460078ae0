"""The one session factory every repository shares: engine, sessions, schema migrations.

A repository holds a :class:`Database` and opens a transaction per method with
:meth:`Database.session`; methods that must commit with someone else's work (a run's
completion, a file manifest) take the caller's ``Session`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest migration (a test checks it against Alembic's head): a store already there
#: is not handed to Alembic at all.
HEAD_REVISION = "0010_partial_label_indexes"


def make_engine(url: str) -> Engine:
    """An engine with SQLite made safe for a CLI and a web app sharing one file."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def insert_ignoring_conflicts(session: Session, table):
    """The backend's ``INSERT`` that supports ``ON CONFLICT DO NOTHING`` (PostgreSQL and
    SQLite spell it alike, but SQLAlchemy builds it per dialect)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    return (postgresql.insert if postgres else sqlite.insert)(table)


class Database:
    """Owns the engine and the session factory; one per store URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def connect(self) -> Connection:
        """A plain connection, for reads straight into pandas."""
        return self.engine.connect()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def describe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when current).

        The common case (already current) is one query: importing Alembic and loading its
        scripts would be most of a short command's start-up."""
        if self.schema_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_revision(self) -> str | None:
        """The store's Alembic revision; None for an empty or unversioned database."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        except sa.exc.DBAPIError:
            return None
        return rows[0][0] if len(rows) == 1 else None


class Repository:
    """One job's reads and writes over the shared :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
