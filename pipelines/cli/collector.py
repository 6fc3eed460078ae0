"""The cyclic garbage collector, paused while a command loads its modules.

Importing pandas, SQLAlchemy, pydantic and the store's models creates a few hundred
thousand objects that live as long as the process, and the collector walks them again
and again while they load: about a tenth of a short command's CPU time. Nothing they
create is garbage worth collecting, so the collector waits, the loaded objects are then
frozen (left out of every later collection) and it resumes, so a long run or a server
collects its own garbage as usual.

Standard library only: it is imported before anything heavy.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def pause() -> bool:
    """Stop the collector; True when it was running (hand that to :func:`resume`)."""
    running = gc.isenabled()
    gc.disable()
    return running


def resume(was_running: bool = True) -> None:
    """Freeze what is loaded so far and start the collector again if it was running."""
    gc.freeze()
    if was_running:
        gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """The block (a command's imports and set-up) runs without the collector."""
    was_running = pause()
    try:
        yield
    finally:
        resume(was_running)
