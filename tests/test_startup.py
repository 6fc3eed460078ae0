"""What a short command loads before it starts its work (the start-up a user waits for)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter at the repository root; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_command_line_loads_no_heavy_library_before_a_command_runs():
    """`import pipelines.cli` (what `vigil --help` and every command pay) registers the
    commands without pandas, SQLAlchemy or the ML libraries, and leaves the garbage
    collector running (it is paused only while modules load)."""
    code = (
        "import gc, sys\n"
        "import pipelines.cli\n"
        "heavy = ('pandas', 'numpy', 'sqlalchemy', 'torch', 'mlflow', 'scipy', 'sklearn',\n"
        "         'prefect', 'alembic', 'fastapi')\n"
        "print([m for m in heavy if m in sys.modules], gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    done = _python(code)
    assert done.stdout.split("\n")[-2] == "[] True True"


def test_a_command_leaves_its_heap_out_of_the_collections_at_exit():
    """The interpreter's shutdown collections would walk every object the command made
    (a quarter of a short `vigil score`'s CPU time): the heap is frozen before them."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('tracked at exit', len(gc.get_objects())))\n"
        "from pipelines.cli import main\n"
        "heap = [[] for _ in range(50_000)]  # what a command builds\n"
        "sys.argv = ['vigil', '--help']\n"
        "main()\n"
    )
    done = _python(code)
    tracked = int(done.stdout.strip().splitlines()[-1].split()[-1])
    assert tracked < 5_000
