"""The cyclic garbage collector, kept off the heap a command loads, and at its exit.

Importing pandas, SQLAlchemy, pydantic and the store's models creates a few hundred
thousand objects that live as long as the process, and the collector walks them again
and again while they load: about a tenth of a short command's CPU time. Nothing they
create is garbage worth collecting, so the collector waits, the loaded objects are then
frozen (left out of every later collection) and it resumes, so a long run or a server
collects its own garbage as usual.

At exit the interpreter runs full collections over the whole heap while it tears the
modules down (a scoring run unfreezes what it froze, so by then that is everything):
about a quarter of a short command's CPU time, to free memory the system takes back
anyway. :func:`freeze_at_exit` freezes the heap first; objects still referenced are
torn down as before, only cycles nobody refers to any more are left to the system.

Standard library only: it is imported before anything heavy.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The block (a command's imports) runs without the collector; what it loaded is
    frozen afterwards. A block that loads nothing new (the modules were there already,
    as in a test process that runs many commands) freezes nothing."""
    modules = len(sys.modules)
    was_running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules:
            gc.freeze()
        if was_running:
            gc.enable()


_freezes_at_exit = False


def freeze_at_exit() -> None:
    """Freeze the heap when the process exits, before the interpreter's last collections
    (registered once per process)."""
    global _freezes_at_exit
    if not _freezes_at_exit:
        atexit.register(gc.freeze)
        _freezes_at_exit = True
