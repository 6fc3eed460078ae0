"""Progress for long work (training epochs, scoring batches).

A rich progress bar on a terminal; plain log lines elsewhere (CI, Prefect workers), so a
run that takes minutes always shows where it is.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipelines.settings import get_settings

logger = logging.getLogger("vigil")

Advance = Callable[..., None]


def _use_bar() -> bool:
    setting = get_settings().progress
    if setting != "auto":
        return setting == "bar"
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, total: int | None, unit: str = "step") -> Iterator[Advance]:
    """Yield ``advance(n=1, **fields)``; fields (e.g. ``val_loss=0.12``) are shown.

    ``total=None`` when the amount of work is not known up front (a streamed CSV)."""
    if _use_bar():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total, info="")

            def advance(n: int = 1, **fields) -> None:
                info = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
                bar.update(task, advance=n, info=info)

            yield advance
        return

    done = 0
    every = max(1, (total or 10) // 10)

    def advance_log(n: int = 1, **fields) -> None:
        nonlocal done
        done += n
        if done % every == 0 or (total is not None and done >= total) or n > 1:
            info = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            count = f"{done}/{total}" if total is not None else str(done)
            # Not print(): flows run with log_prints=True, which would route the line to
            # Prefect's logger (shown at WARNING and above only), hiding the progress.
            sys.stderr.write(f"{description}: {count} {unit} {info}".rstrip() + "\n")
            sys.stderr.flush()

    yield advance_log


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
