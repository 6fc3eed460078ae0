"""The steps ``vigil demo`` walks through on the generated card stream.

Each step does what a person would do by hand (and prints that command), then says in a
few lines what came of it: the data, training, the scored week beside a rules baseline,
the analyst's queue, the feedback loop with promotion, and the next day's operations.
Every call into the flows and the store is here, in one place, so a change of their
signatures is one edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.demo_cards import (
    ALERT_RATE,
    AMOUNT_RULE,
    CARD_SPEC,
    FRAUD_TYPES,
    SPENDING_SHIFT,
    TRAIN_DAYS,
    VELOCITY_RULE,
    beats_rules,
    catches,
    rules_scores,
)

KINDS = ("seq_vae", "seq_gan", "vae")
CHAMPION_KIND = "seq_vae"
#: The week's days the analyst works; the days after are where before/after is measured.
REVIEWED_DAYS = 4


@dataclass
class DemoContext:
    settings: object
    files: dict[str, Path]
    epochs: int
    max_train_rows: int
    verdict_cases: int
    echo: Callable[[str], None]
    state: dict = field(default_factory=dict)

    def model(self, kind: str) -> str:
        return f"{CARD_SPEC.name}-{kind}"

    def store(self):
        from pipelines.store import ResultsStore

        return ResultsStore(self.settings.resolved_database_url)

    def truth(self) -> pd.DataFrame:
        frame = pd.read_csv(self.files["truth"], dtype=str, keep_default_na=False)
        return frame.set_index("transaction_id")

    def header(self, title: str, command: str) -> None:
        self.echo("")
        self.echo(f"== {title}")
        self.echo(f"   by hand: {command}")


def _rel(path: Path) -> str:
    return str(path)


# -- the calls into flows and the store (one place) ---------------------------------------


def _train(ctx: DemoContext, data: Path, kinds, *, with_labels: bool = False) -> dict:
    from pipelines.flows import train_flow
    from pipelines.modeling.training import TrainConfig

    seq = {"epochs": ctx.epochs, "max_train_rows": ctx.max_train_rows}
    config = TrainConfig(
        detectors=list(kinds),
        vae={"epochs": ctx.epochs},
        gan={"epochs": ctx.epochs},
        seq_vae=seq,
        seq_gan=seq,
        min_labels=10,
    )
    return train_flow(
        data=str(data), spec_path=str(ctx.files["spec"]), config=config, with_labels=with_labels
    )


def _score(ctx: DemoContext, data: Path, model: str, out: Path) -> dict:
    from pipelines.flows import score_flow
    from pipelines.jobs.score import ScoreRequest

    return score_flow(ScoreRequest(data=str(data), model=model, out=str(out))).to_dict()


def _scores_and_kind(ctx: DemoContext, model: str, frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """A registered model's scores for ``frame``, with the kept card history before it, and
    ``"labelled"`` or ``"unsupervised"``: what scored them."""
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
    from pipelines.scoring.history import KeptHistory

    configure_mlflow(ctx.settings)
    history = KeptHistory(ctx.store(), CARD_SPEC).before(frame).frame
    bundle = load_bundle(resolve_model(model))
    labelled = hasattr(bundle, "use_labels")
    if labelled:  # as `vigil score` does: the frauds confirmed so far
        from pipelines.feedback.training import fraud_labels  # deferred: imports MLflow

        known = ctx.store().known_labels(known_before=datetime.now(UTC), dataset=CARD_SPEC.name)
        bundle.use_labels(fraud_labels(known))
    scores = bundle.score(frame, history=history, with_reasons=False)["score"].to_numpy()
    return scores, "labelled" if labelled else "unsupervised"


def _import_verdicts(ctx: DemoContext, path: Path):
    from pipelines.feedback.labels import read_label_file

    parsed = read_label_file(path, default_source="review", dataset=CARD_SPEC.name)
    return ctx.store().add_label_rows(parsed.rows, actor="demo analyst", source_name=str(path))


def _promote(ctx: DemoContext, model: str) -> str:
    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations import promotion

    configure_mlflow(ctx.settings)
    policy = promotion.load_policy(None).model_copy(update={"min_labelled": 50})
    result = promotion.promote(ctx.store(), model, policy, actor="vigil demo")
    return promotion.describe_result(result)


# -- the steps ----------------------------------------------------------------------------


def data(ctx: DemoContext) -> dict:
    train = pd.read_csv(ctx.files["train"], usecols=["card_id", "is_fraud"])
    truth = ctx.truth()
    week = pd.read_csv(ctx.files["week"], usecols=["transaction_id"])
    kinds = truth.loc[week["transaction_id"], "fraud_kind"]
    ctx.header(
        "1. a card stream with hidden fraud",
        f"vigil spec init --data {_rel(ctx.files['train'])} --id-col transaction_id "
        "--label-col is_fraud --entity-col card_id --time-col timestamp",
    )
    ctx.echo(
        f"   {train['card_id'].nunique()} cards; {TRAIN_DAYS} days to learn from "
        f"({len(train)} payments, {int(train['is_fraud'].sum())} known chargebacks), "
        f"a week to score ({len(week)} payments), a next day to watch"
    )
    counts = ", ".join(f"{t.replace('_', ' ')} {int((kinds == t).sum())}" for t in FRAUD_TYPES)
    ctx.echo(f"   hidden in the week: {counts} fraudulent payments")
    ctx.echo("   normal, not to flag: trips abroad, night owls, monthly subscriptions at 03:00,")
    ctx.echo("   evening online shopping at new web shops")
    return {"cards": int(train["card_id"].nunique()), "week_rows": len(week)}


def train(ctx: DemoContext) -> dict:
    ctx.header(
        "2. train on the fortnight: sequence models first, the tabular VAE for comparison",
        f"vigil train --data {_rel(ctx.files['train'])} --spec {_rel(ctx.files['spec'])} "
        f"--detectors {','.join(KINDS)} --epochs {ctx.epochs} "
        f"--max-train-rows {ctx.max_train_rows}",
    )
    result = _train(ctx, ctx.files["train"], KINDS)
    ctx.state["versions"] = {}
    for model in result["models"]:
        m = model["metrics"]
        ctx.state["versions"][model["detector"]] = f"{model['model']}/{model['version']}"
        problems = "; ".join(p.split(":")[0] for p in model.get("problems", []))
        aliases = ", ".join(model["aliases"]) or f"no alias: {problems}"
        ctx.echo(
            f"   {model['model']} v{model['version']} [{aliases}]  AUROC {m['auroc']:.3f}  "
            f"fit {m['fit_seconds']:.0f} s"
        )
    return result


def _champion(ctx: DemoContext) -> str:
    """The champion alias, or the trained version by number where training's gates gave
    it no alias (the demo goes on, and step 2 said why)."""
    from pipelines.modeling.registry import configure_mlflow, resolve_model

    configure_mlflow(ctx.settings)
    name = f"{ctx.model(CHAMPION_KIND)}@champion"
    try:
        resolve_model(name)
    except ValueError:
        return ctx.state["versions"][CHAMPION_KIND]
    return name


def score_week(ctx: DemoContext) -> dict:
    champion = _champion(ctx)
    out = ctx.settings.home_dir / "demo_week_scores.parquet"
    ctx.header(
        f"3. score the week with the champion; what each model catches at a {ALERT_RATE:.0%} "
        "alert rate",
        f"vigil score --data {_rel(ctx.files['week'])} --model {champion}",
    )
    week = pd.read_csv(ctx.files["week"])
    run = _score(ctx, ctx.files["week"], champion, out)
    ctx.state["week_run"] = run
    scored = pd.read_parquet(out).set_index("record_id")["score"]
    kinds = ctx.truth().loc[week["transaction_id"], "fraud_kind"].to_numpy()
    scores = {CHAMPION_KIND: scored.reindex(week["transaction_id"].astype(str)).to_numpy()}
    for kind in KINDS[1:]:
        scores[kind], _ = _scores_and_kind(ctx, ctx.state["versions"][kind], week)
    train = pd.read_csv(ctx.files["train"]).drop(columns=["is_fraud"])
    scores["rules"] = rules_scores(pd.concat([train, week], ignore_index=True))[len(train) :]
    health = (run.get("health") or {}).get("summary", "not measured")
    ctx.echo(
        f"   run {run['run_id'][:8]}: {run['rows_scored']} scored, {run['rows_flagged']} "
        f"flagged at the champion's threshold; health: {health}"
    )
    table = {name: catches(s, kinds) for name, s in scores.items()}
    ctx.state["table"] = table
    for line in per_type_lines(table):
        ctx.echo("   " + line)
    return {"run": run, "table": table}


def per_type_lines(table: dict) -> list[str]:
    """The per-type table: caught / planted at the alert rate, rules last, and what the
    learned models add over the rules (or where they do not)."""
    names = [n for n in table if n != "rules"] + ["rules"]
    head = f"{'caught / planted':22}" + "".join(f"{n:>10}" for n in names)
    lines = [head]
    for t in (*FRAUD_TYPES, "normal"):
        label = t.replace("_", " ") if t != "normal" else "normal payments alerted"
        cells = "".join(f"{table[n][t][0]:>5}/{table[n][t][1]:<4}" for n in names)
        lines.append(f"{label:22}{cells}")
    lines.append(
        f"rules = amount >= {AMOUNT_RULE:g}x the card's median or >= {VELOCITY_RULE} payments "
        "in 10 minutes, ranked to the same alert rate"
    )
    for n in names[:-1]:
        wins = beats_rules(table, n)
        losses = [t for t in FRAUD_TYPES if t not in wins]
        text = f"{n}: beats the rules on {len(wins)} of {len(FRAUD_TYPES)} types"
        if losses:
            text += f"; not on {', '.join(t.replace('_', ' ') for t in losses)}"
        lines.append(text)
    return lines


def queue(ctx: DemoContext) -> dict:
    store = ctx.store()
    page = store.queue_page(limit=3)
    open_cases = page.counts.get("open", 0)
    ctx.header(
        "4. the analysts' queue: one case per card, reasons in words",
        "vigil review   (then open http://"
        f"{ctx.settings.review_host}:{ctx.settings.review_port}/ )",
    )
    ctx.echo(f"   {open_cases} open cases; the top three, with the top flag's first reason:")
    flags = store.list_flags(run_id=ctx.state["week_run"]["run_id"], limit=100_000)
    by_card: dict[str, list] = {}
    for flag in flags:
        by_card.setdefault(str(flag.entity or ""), []).append(flag)
    for item in page.items:
        entity = item.get("entity") or "?"
        reason = _first_reason(by_card.get(str(entity), []))
        n = item.get("flag_count", 0)
        ctx.echo(f"   card {entity}, {n} flagged payment{'s' if n != 1 else ''}: {reason}")
    return {"open_cases": open_cases}


def _first_reason(flags: list) -> str:
    if not flags:
        return "-"
    top = max(flags, key=lambda f: f.score)
    reasons = getattr(top, "reasons", None) or []
    if isinstance(reasons, str):
        return reasons
    for r in reasons:
        text = r.get("text") or r.get("description") if isinstance(r, dict) else str(r)
        if text:
            return text
    return "-"


def feedback_loop(ctx: DemoContext) -> dict:
    """Verdicts on the top of the first days' flags, a labelled model trained on the data up
    to then, before/after on the days after (which neither model has seen)."""
    store = ctx.store()
    truth = ctx.truth()
    week = pd.read_csv(ctx.files["week"])
    day = (pd.to_datetime(week["timestamp"]) - pd.Timestamp("2026-03-02")).dt.days
    reviewed_days = day < TRAIN_DAYS + REVIEWED_DAYS
    early = set(week.loc[reviewed_days, "transaction_id"].astype(str))
    flags = store.list_flags(run_id=ctx.state["week_run"]["run_id"], limit=100_000)
    reviewed = sorted(
        (f for f in flags if str(f.record_id) in early), key=lambda f: -float(f.score)
    )[: ctx.verdict_cases * 2]
    ids = [str(f.record_id) for f in reviewed]
    verdict = np.where(truth.loc[ids, "is_fraud"] == "1", "fraud", "not_fraud")
    # The analyst works each day's queue the next morning: a verdict is known at the
    # midnight after its payment (stream time), as it would be live.
    paid = week.set_index(week["transaction_id"].astype(str)).loc[ids, "timestamp"]
    known_at = pd.to_datetime(paid).dt.floor("D") + pd.Timedelta(days=1)
    path = ctx.settings.home_dir / "demo_verdicts.csv"
    _verdict_file(path, ids, verdict, known_at=known_at.dt.tz_localize(UTC).to_numpy())
    # What the team has when it retrains: the fortnight (its chargebacks in `is_fraud`)
    # and the reviewed days; the week's last days stay unseen, for before/after.
    through = ctx.settings.home_dir / "demo" / "through_reviewed.csv"
    train = pd.read_csv(ctx.files["train"])
    pd.concat([train, week[reviewed_days]], ignore_index=True).to_csv(through, index=False)
    ctx.header(
        "5. the loop: the analyst's verdicts -> a labelled model (the challenger)",
        f"vigil labels import {path} --source review; vigil train --data {through} "
        f"--spec {ctx.files['spec']} --detectors {CHAMPION_KIND} --with-labels",
    )
    imported = _import_verdicts(ctx, path)
    n_fraud = int((verdict == "fraud").sum())
    ctx.echo(
        f"   the analyst judged the {len(ids)} top flags of the week's first {REVIEWED_DAYS} "
        f"days: {n_fraud} fraud, {len(ids) - n_fraud} not fraud ({imported.inserted} new)"
    )
    trained = _train(ctx, through, [CHAMPION_KIND], with_labels=True)
    labelled = next((m for m in trained["models"] if m.get("base")), None)
    if labelled is None:
        for s in trained.get("reranked_skipped", []):
            ctx.echo(f"   no labelled model: {s['skipped']}")
        return {"trained": trained}
    ref = f"{labelled['model']}/{labelled['version']}"
    n_data = int(labelled["metrics"].get("n_frauds", 0)) - n_fraud
    ctx.echo(
        f"   labelled model {ref} [{', '.join(labelled['aliases'])}] learned from the "
        f"verdicts and the fortnight's chargebacks ({n_data} from the data's is_fraud column)"
    )
    later = week[~reviewed_days].reset_index(drop=True)
    return _before_after(ctx, later, ctx.state["versions"][CHAMPION_KIND], ref)


def _before_after(ctx: DemoContext, later: pd.DataFrame, champion: str, labelled: str) -> dict:
    """Precision, recall and catches per type at one alert budget, champion vs labelled."""
    truth = ctx.truth().loc[later["transaction_id"].astype(str)]
    y = (truth["is_fraud"] == "1").to_numpy()
    kinds = truth["fraud_kind"].to_numpy()
    budget = max(1, int(round(ALERT_RATE * len(later))))
    before, _ = _scores_and_kind(ctx, champion, later)
    after, after_kind = _scores_and_kind(ctx, labelled, later)
    out: dict = {"budget": budget, "after_model": labelled, "after_kind": after_kind}
    for name, scores in (("before", before), ("after", after)):
        top = np.argsort(-scores, kind="stable")[:budget]
        out[f"precision_{name}"] = float(y[top].mean())
        out[f"recall_{name}"] = float(y[top].sum() / max(1, y.sum()))
        out[f"catches_{name}"] = catches(scores, kinds, rate=budget / len(later))
    ctx.echo(
        f"   on the week's last {7 - REVIEWED_DAYS} days (never reviewed, never trained on: "
        f"{int(y.sum())} frauds in {len(later)} payments), at the alert budget ({budget} "
        f"alerts): precision {out['precision_before']:.2f} -> {out['precision_after']:.2f}, "
        f"recall {out['recall_before']:.2f} -> {out['recall_after']:.2f}"
    )
    for t in FRAUD_TYPES:
        (b, n), (a, _) = out["catches_before"][t], out["catches_after"][t]
        ctx.echo(f"     {t.replace('_', ' '):22} {b:>4} -> {a:<4} of {n}")
    ctx.echo("   vigil promote weighs it against the champion once both have scored the same")
    ctx.echo("   records and the analysts have judged them: the next day, below")
    return out


def next_day(ctx: DemoContext) -> dict:
    champion = _champion(ctx)
    ctx.header(
        f"6. operations: the next day, spending up {SPENDING_SHIFT - 1:.0%} (a sale), scored "
        "by the champion, the challenger in shadow, then promotion",
        f"vigil score --data {_rel(ctx.files['next_day'])} --model {champion}; vigil runs",
    )
    out = ctx.settings.home_dir / "demo_next_day_scores.parquet"
    run = _score(ctx, ctx.files["next_day"], champion, out)
    ctx.echo(
        f"   run {run['run_id'][:8]} with v{run['model_version']}: {run['rows_scored']} "
        f"scored, {run['rows_flagged']} flagged"
    )
    health = run.get("health") or {}
    ctx.echo(f"   health: {health.get('summary', 'not measured')}")
    shadow = run.get("shadow")
    if shadow:
        ctx.echo(
            f"   shadow: {shadow['model']} v{shadow['model_version']} would flag "
            f"{shadow['would_flag']}"
        )
    else:
        ctx.echo("   shadow: no challenger apart from the champion now")
        return {"run": run}
    # The analysts judge what either model flagged that day; promotion weighs the two on
    # those verdicts (records both scored) and on the flag volumes of the paired runs.
    store = ctx.store()
    flagged = set()
    for run_id in (run["run_id"], shadow["run_id"]):
        scores = store.scores_frame(run_id)
        flagged |= set(scores.loc[scores["is_anomaly"].astype(bool), "record_id"].astype(str))
    truth = ctx.truth()
    ids = sorted(flagged)
    verdict = np.where(truth.loc[ids, "is_fraud"] == "1", "fraud", "not_fraud")
    path = ctx.settings.home_dir / "demo_verdicts_next_day.csv"
    _verdict_file(path, ids, verdict, ago_s=0)
    _import_verdicts(ctx, path)
    ctx.echo(
        f"   the analysts judge the {len(ids)} payments either model flagged: "
        f"{int((verdict == 'fraud').sum())} fraud"
    )
    ctx.echo(f"   by hand: vigil labels import {path} --source review; vigil promote")
    decision = _promote(ctx, ctx.model(CHAMPION_KIND))
    for line in decision.splitlines()[:7]:
        ctx.echo("   " + line)
    return {"run": run, "promotion": decision}


def _verdict_file(
    path: Path, ids: list[str], verdict: np.ndarray, ago_s: float = 60, known_at=None
) -> None:
    """A label file as the review app exports it; ``known_at`` per row, or ``ago_s`` ago."""
    if known_at is None:
        known_at = (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat()
    else:
        known_at = [pd.Timestamp(t).isoformat() for t in known_at]
    pd.DataFrame(
        {
            "record_id": ids,
            "verdict": verdict,
            "source": "review",
            "known_at": known_at,
            "analyst": "demo-analyst",
        }
    ).to_csv(path, index=False)


STEPS = (data, train, score_week, queue, feedback_loop, next_day)
