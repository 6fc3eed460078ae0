"""The ``vigil`` command line.

Settings are applied before Prefect or MLflow is imported (both read the environment at
import time), so every command imports its heavy modules lazily.

The ``main`` group and what every command shares; the commands live in the modules
beside this one, one per job."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from pipelines.cli import collector
from pipelines.settings import get_settings

#: Where `spec init` and `demo-data` write by default: the user's project folder.
DEFAULT_SPECS = Path("data") / "specs"


DEFAULT_SAMPLES = Path("data") / "samples"


DEFAULT_SPEC = DEFAULT_SPECS / "demo_transactions.yaml"


#: Exit code when the same batch is being scored by another live process right now.
EXIT_ALREADY_RUNNING = 3


def _fail(message: str, code: int = 2) -> None:
    click.echo(click.style(f"error: {message}", fg="red"), err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns the errors people cause (bad files, bad specs, unknown models, a store that
    went away) into one readable line instead of a traceback, and spares the process's
    exit the garbage collector's passes (:mod:`pipelines.cli.collector`)."""

    def main(self, *args, **kwargs):
        collector.freeze_at_exit()
        return super().main(*args, **kwargs)

    def invoke(self, ctx):
        with collector.paused():  # pandas and the spec's models, which most commands use
            from pipelines.intake.ingest import DataSourceError
            from pipelines.intake.spec import SpecError
            from pipelines.store import LeaseLost, RunAlreadyRunning, StoreUnavailable

        try:
            with _quiet_prefect_errors():
                return super().invoke(ctx)
        except RunAlreadyRunning as exc:
            _fail(f"already running: {exc}", EXIT_ALREADY_RUNNING)
        except (StoreUnavailable, LeaseLost) as exc:
            _fail(f"{exc}; re-run to resume from the last committed chunk")
        except (DataSourceError, SpecError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))


class _DropFlowErrorRecords(logging.Filter):
    """Prefect logs a failed flow or task with its full traceback before the exception
    reaches the CLI; the CLI prints its own one-line message (the Prefect API, when one
    is configured, still keeps the failed state with the traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


@contextmanager
def _quiet_prefect_errors():
    names = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")
    loggers = [logging.getLogger(name) for name in names]
    quiet = _DropFlowErrorRecords()
    handlers = [h for lg in loggers for h in lg.handlers]
    for target in (*loggers, *handlers):
        target.addFilter(quiet)
    try:
        yield
    finally:
        for target in (*loggers, *handlers):
            target.removeFilter(quiet)


@contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API for the flows this command runs, stopped when the command ends.

    With ``PREFECT_API_URL`` set (or a test harness's), that server. Without, a temporary
    local one that this command starts and stops on the way out, success or failure
    (SIGTERM and SIGHUP included: they exit through here). Its address is put in
    Prefect's settings, so the task runs on Dask workers report to it as well: a worker
    that finds no API starts a temporary server of its own, and a worker of a long-lived
    cluster keeps it running after the command is gone."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with _exit_on_termination():
        try:
            server.start()
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                try:
                    yield server.api_url
                finally:
                    _drain_prefect_clients()
        finally:
            server.stop()


def _drain_prefect_clients(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still holds while its server is up: stopped
    first, the server leaves them to be retried at exit (a minute of "Error logging to
    API" after the command's own work is done)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - best effort on the way out
            continue


@contextmanager
def _exit_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit here (Python's default is to die at once,
    skipping every ``finally``), so what the command started is stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _use_prefect() -> bool:
    """Run jobs as Prefect flows only when a Prefect API is configured: otherwise each
    command would start (and, killed, leave behind) a temporary API server."""
    return bool(os.environ.get("PREFECT_API_URL"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """vigil: train VAE and GAN anomaly detectors, score batches, review flags."""
    get_settings().apply_environment()


def _store():
    from pipelines.store import ResultsStore

    return ResultsStore(get_settings().resolved_database_url)


def _actor(actor: str | None = None) -> str:
    import getpass

    return actor or getpass.getuser()
