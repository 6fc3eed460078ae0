"""Prometheus metrics in the text exposition format, written by hand (no client library).

``vigil api`` counts requests, errors, records and flags, and keeps histograms of request
latency and of scores; ``vigil serve`` exposes what the results store says of its
scoring runs. Both answer ``GET /metrics`` with :meth:`Registry.exposition` (format
0.0.4: ``# HELP``, ``# TYPE``, one sample a line, histogram buckets cumulative with
``le`` labels and ``_sum`` / ``_count``).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request latency buckets (seconds): a payment should take a few milliseconds.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Anomaly score buckets (scores are positive; a threshold usually lies between 5 and 100).
SCORE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        values = dict(self._values) or ({(): 0.0} if not self.labels else {})
        for labels, value in sorted(values.items()):
            out.append(f"{self.name}{_labels(self.labels, labels)} {_number(value)}")
        return out


class Gauge:
    """A value read when scraped (``read`` returns {label values: value}); ``kind`` is
    ``counter`` for a total kept elsewhere and read here."""

    def __init__(
        self,
        name: str,
        help_text: str,
        read: Callable[[], dict[tuple[str, ...], float]],
        labels: Sequence[str] = (),
        kind: str = "gauge",
    ) -> None:
        self.name, self.help, self.read, self.labels = name, help_text, read, tuple(labels)
        self.kind = kind

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in sorted(self.read().items()):
            out.append(f"{self.name}{_labels(self.labels, labels)} {_number(value)}")
        return out


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect_left(self.bounds, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += count
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        out.append(f"{self.name}_sum {_number(self._sum)}")
        out.append(f"{self.name}_count {running}")
        return out


class Registry:
    """The metrics one process exposes, in registration order."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric):
        self._metrics.append(metric)
        return metric

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.lines()
        return "\n".join(lines) + "\n"


#: The kept-history writer's figures on ``/metrics``: (name after ``vigil_api_history_``,
#: type, help).
_FLUSH_FIGURES = (
    ("flushes_total", "counter", "Flushes of scored records to the kept history."),
    ("rows_written_total", "counter", "Scored records written to the kept history."),
    ("flush_seconds_total", "counter", "Seconds spent flushing scored records."),
    ("flush_seconds_max", "gauge", "The longest flush so far, in seconds."),
    ("pending_rows", "gauge", "Scored records waiting for the next flush."),
)


class ApiMetrics:
    """What ``vigil api`` counts; ``history`` gives the writer of the scored records (its
    flushes hold the interpreter for a while, and requests answered meanwhile wait)."""

    def __init__(self, history: Callable[[], object | None] | None = None) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.requests = add(
            Counter("vigil_api_requests_total", "Scoring requests by outcome.", ["outcome"])
        )
        self.errors = add(
            Counter("vigil_api_errors_total", "Requests that failed, by kind.", ["kind"])
        )
        self.records = add(Counter("vigil_api_records_scored_total", "Records scored."))
        self.flagged = add(Counter("vigil_api_records_flagged_total", "Records flagged."))
        self.rejected = add(Counter("vigil_api_records_rejected_total", "Records rejected."))
        self.latency = add(
            Histogram(
                "vigil_api_request_duration_seconds",
                "Time to answer one scoring request.",
                LATENCY_BUCKETS,
            )
        )
        self.scores = add(
            Histogram("vigil_api_scores", "Anomaly scores of the records scored.", SCORE_BUCKETS)
        )
        if history is not None:
            self._history = history
            for field, kind, help_text in _FLUSH_FIGURES:
                add(
                    Gauge(
                        f"vigil_api_history_{field}",
                        help_text,
                        lambda field=field: self._flush_figure(field),
                        kind=kind,
                    )
                )

    def _flush_figure(self, field: str) -> dict[tuple[str, ...], float]:
        writer = self._history()
        if writer is None:
            return {(): 0.0}
        if field == "pending_rows":
            return {(): float(writer.pending_rows)}
        stats = writer.stats
        value = {
            "flushes_total": stats.flushes,
            "rows_written_total": stats.rows,
            "flush_seconds_total": stats.seconds,
            "flush_seconds_max": stats.longest_seconds,
        }[field]
        return {(): float(value)}

    def observe(self, response: dict, seconds: float) -> None:
        self.requests.inc(1, "ok")
        self.latency.observe(seconds)
        results = response.get("results", [])
        self.records.inc(len(results))
        self.rejected.inc(len(response.get("rejected", [])))
        for result in results:
            self.scores.observe(result["score"])
            if result["is_anomaly"]:
                self.flagged.inc()

    def failed(self, kind: str, seconds: float) -> None:
        self.requests.inc(1, "error")
        self.errors.inc(1, kind)
        self.latency.observe(seconds)


#: Runs ``vigil serve``'s metrics summarise (the newest first).
RECENT_RUNS = 1000


class RunMetrics:
    """What ``vigil serve`` exposes: its scheduled runs happen in other processes, so the
    figures are read from the results store when scraped (the newest ``RECENT_RUNS``
    scoring runs: by status and role, rows scored and flagged, the last run's time)."""

    def __init__(self, store) -> None:
        self.store = store
        self.registry = Registry()
        add = self.registry.add
        add(Gauge("vigil_serve_up", "1 while vigil serve runs.", lambda: {(): 1.0}))
        add(
            Gauge(
                "vigil_scoring_runs",
                f"Scoring runs among the newest {RECENT_RUNS}, by status and role.",
                lambda: self._by("status_role"),
                ["status", "role"],
            )
        )
        add(
            Gauge(
                "vigil_scoring_rows",
                f"Rows of the newest {RECENT_RUNS} scoring runs, by what became of them.",
                lambda: self._by("rows"),
                ["kind"],
            )
        )
        add(
            Gauge(
                "vigil_scoring_last_run_seconds",
                "Wall-clock seconds the newest finished scoring run spent scoring.",
                lambda: self._by("last_seconds"),
            )
        )
        add(
            Gauge(
                "vigil_scoring_last_finished_timestamp_seconds",
                "When the newest finished scoring run ended (Unix seconds).",
                lambda: self._by("last_finished"),
            )
        )
        self._cache: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def _by(self, part: str) -> dict[tuple[str, ...], float]:
        import time

        with self._lock:  # one store read per scrape, shared by the gauges
            if self._cache is None or time.monotonic() - self._cache[0] > 1.0:
                self._cache = (time.monotonic(), self._summary())
            return self._cache[1][part]

    def _summary(self) -> dict[str, dict]:
        runs = self.store.list_runs(limit=RECENT_RUNS)
        by: dict[tuple[str, ...], float] = {}
        rows = {("in",): 0.0, ("scored",): 0.0, ("quarantined",): 0.0, ("flagged",): 0.0}
        for run in runs:
            key = (str(run.status), str(run.role))
            by[key] = by.get(key, 0.0) + 1
            rows[("in",)] += run.rows_in or 0
            rows[("scored",)] += run.rows_scored or 0
            rows[("quarantined",)] += run.rows_quarantined or 0
            rows[("flagged",)] += run.rows_flagged or 0
        finished = [r for r in runs if r.finished_at is not None]
        last = max(finished, key=lambda r: r.finished_at, default=None)
        return {
            "status_role": by,
            "rows": rows,
            "last_seconds": {} if last is None else {(): float(last.score_seconds or 0.0)},
            "last_finished": {} if last is None else {(): last.finished_at.timestamp()},
        }


def start_metrics_server(registry: Registry, host: str, port: int):
    """Serve ``GET /metrics`` from ``registry`` in a daemon thread; returns the server
    (``shutdown()`` stops it). For processes without a web app of their own."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics here")
                return
            try:
                body = registry.exposition().encode()
            except Exception as exc:  # noqa: BLE001 - a scrape error, not a crash
                self.send_error(500, str(exc)[:200])
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="vigil-metrics", daemon=True).start()
    return server
