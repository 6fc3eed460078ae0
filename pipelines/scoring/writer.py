"""Where a scoring run's chunks go: committed to the store in order, one transaction each,
while the next chunk is being scored."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from pipelines.store import ResultsStore
from pipelines.store.runs import ChunkWrite, RunClaimTicket


class ChunkWriter:
    """Commits chunks in a background thread, one at a time and in order, so the next
    chunk is read and scored while the database takes the previous one (PostgreSQL's
    ``COPY`` runs in the server process: on two cores that is the other core).

    At most one chunk is in flight: ``submit`` first waits for the previous commit and
    re-raises its error (a lost lease, a store that went away), and leaving the block
    waits for the last one, so a chunk is committed whole or not at all.
    """

    def __init__(self, store: ResultsStore, ticket: RunClaimTicket) -> None:
        self._store, self._ticket = store, ticket
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-writer")
        self._pending: Future | None = None

    def submit(self, write: ChunkWrite) -> None:
        self.wait()
        self._pending = self._pool.submit(
            self._store.write_chunk, self._ticket.run.id, self._ticket.owner, write
        )

    def wait(self) -> None:
        """Wait for the chunk in flight to be committed; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)  # a commit under way finishes either way
