"""What a scoring job reports: the champion's run, its drift-watch health and the
challenger's shadow run (and, scheduled, each new batch's), as typed objects (``to_dict``
gives the JSON that ``vigil score --json`` prints and the flow's result shows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from pipelines.scoring.run import RunReport


@dataclass
class ShadowReport:
    """The challenger's run on the same batch: what it would flag, and what a second
    model costs (its load and scoring seconds, and the ratio to the champion's)."""

    run_id: str
    model: str
    model_version: str
    rows_scored: int
    would_flag: int
    already_scored: bool
    load_seconds: float
    score_seconds: float | None
    cost_ratio: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunHealth:
    """A run's drift-watch health: its status (``ok``, ``alarm``, ``no_reference``), the
    alarms and the one-line summary; ``detail`` is the whole assessment as the store
    keeps it (every number behind them)."""

    status: str
    summary: str
    alarms: list = field(default_factory=list)
    detail: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, health: dict | None) -> RunHealth | None:
        if health is None:
            return None
        return cls(
            status=health["status"],
            summary=health["summary"],
            alarms=list(health.get("alarms") or []),
            detail=dict(health),
        )

    def to_dict(self) -> dict:
        return {
            **self.detail,
            "status": self.status,
            "alarms": self.alarms,
            "summary": self.summary,
        }


@dataclass
class ScoreReport(RunReport):
    """The champion's run, with what the job adds: its health, the shadow run, notes
    (a challenger that failed), the scores file written (``out``) and, for a watched
    source's batch, what the batch was (``input``: a file's name, the SQL rows' range)."""

    health: RunHealth | None = None
    shadow: ShadowReport | None = None
    notes: list[str] = field(default_factory=list)
    out: str | None = None
    input: str | None = None

    @classmethod
    def of(cls, run: RunReport) -> ScoreReport:
        return cls(**{f.name: getattr(run, f.name) for f in fields(RunReport)})

    def to_dict(self) -> dict:
        out = {} if self.input is None else {"input": self.input}
        out.update({f.name: getattr(self, f.name) for f in fields(RunReport)})
        out["health"] = None if self.health is None else self.health.to_dict()
        out["shadow"] = None if self.shadow is None else self.shadow.to_dict()
        if self.notes:
            out["notes"] = list(self.notes)
        if self.out is not None:
            out["out"] = self.out
        return out


@dataclass
class ScheduledReport:
    """One scheduled run over a watched source: what was new, what each new batch's run
    wrote, and one line for the log."""

    source: str
    nothing_new: bool
    waiting: list[str] = field(default_factory=list)
    already_known: int = 0
    runs: list[ScoreReport] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "nothing_new": self.nothing_new,
            "waiting": list(self.waiting),
            "already_known": self.already_known,
            "runs": [run.to_dict() for run in self.runs],
            "message": self.message,
        }
