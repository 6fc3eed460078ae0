"""Feedback benchmark: the handbook replay with a simulated analyst team.

    python -m benchmarks feedback [--customer-fraction 0.2 --epochs 3]

Protocol (Fraud-Detection-Handbook data, ``TX_FRAUD_SCENARIO`` only for per-scenario
figures and the held-out-type variant):

1. The unsupervised model is the tabular VAE on raw + context features (``vae_context`` of
   the sequence benchmark), fit once on a sample of April-June normals.
2. July-September are replayed day by day. Each variant serves a score per record; each
   day its analyst team reviews the top ``--cards-per-day`` cards (by their highest score
   that day) and labels all of those cards' records of the day with the truth; the labels
   become known ``--label-delay-days`` later (at the start of day d + delay + 1).
3. Every ``--update-every`` days, each variant's re-ranker is retrained on the labels known
   then (+ a sample of unlabelled replay records as presumed normals); risk features count
   the labels known before each record (exact: labels arrive at day boundaries).
4. Figures are over the days from the first model update on (before it, every vigil
   variant serves the unsupervised score and the baselines have no model).

Variants: ``unsupervised`` (u = VAE score / its threshold); ``risk_only`` (re-ranker on u +
risk features); ``rerank_only`` (re-ranker on u + latent means + per-feature errors + context
features, no risk features); ``all`` (everything); ``all_heldout_s3`` (``all`` whose analysts'
verdicts on scenario-3 frauds never become labels: the novel-pattern case); ``all_linked`` /
``all_linked_heldout_s3``: the same, with 10 of the 100 daily cards given to the cards that
paid where the most confirmed frauds are known (a "linked to confirmed fraud" lane);
``*_explore``: 10 of 100 to the cards the labelled model is least sure of; ``*_clean``:
unlabelled records that paid where a confirmed fraud was known are not presumed normal;
``*_prop``: half of them, drawn at random, are presumed frauds instead (a confirmed fraud
propagated to its terminal's later payments). Served score: the product's rule,
``max(p / 0.5, floor(u))`` (``NoveltyFloor``, its reference refit at each update on the
presumed normals' u). Baselines (HistGradientBoosting, same code path, on raw + context +
risk features, served p): ``supervised_same_labels`` trained on the labels the
``--same-labels-from`` team produced (+ a plain sample of unlabelled records as normals);
``supervised_all_labels`` on every record's label with the same delay (the handbook's
setting; training records from June on, normals subsampled).
Threshold recalibration changes no ranking: it is reported separately as flags/day and
precision at a fixed 1%-FPR threshold vs a weekly alert-budget threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.feedback_queue import Team, linked_cards, top_cards
from benchmarks.feedback_report import figures, plot_per_day, threshold_effect
from benchmarks.feedback_stage import _log, prepare_stage
from benchmarks.sequences import (
    SCENARIOS,
    SPEC_FILE,
    _meta,
    card_precision_at_k,
    load_handbook,
    quality,
)
from pipelines.feedback.reranker import (
    DEFAULT_FLOOR_BELOW,
    DEFAULT_FLOOR_CAP,
    BoostedTrees,
    NoveltyFloor,
    served_score,
)
from pipelines.feedback.risk import RiskConfig, build_risk_features
from pipelines.intake.spec import load_spec

__all__ = ["figures", "main", "run"]


@dataclass(frozen=True)
class Variant:
    """One replayed team and its labelled model: what the model reads, which verdicts never
    become labels, how the day's cards are split between lanes (per 100 cards), and how the
    unlabelled records are used in training."""

    deep: bool = True  # latents, errors and context features beside u
    risk: bool = True  # verdict-driven terminal risk features
    heldout: int | None = None  # a scenario whose verdicts never become labels
    linked: int = 0  # cards linked to confirmed fraud (terminal seen with one)
    explore: int = 0  # cards the labelled model is least sure of
    clean: bool = False  # linked unlabelled records are not presumed normal
    propagate: float = 0.0  # weight of linked unlabelled records as presumed frauds


BASE_VARIANTS = {
    "risk_only": Variant(deep=False),
    "rerank_only": Variant(risk=False),
    "all": Variant(),
    "all_heldout_s3": Variant(heldout=3),
    "all_linked": Variant(linked=10),
    "all_linked_heldout_s3": Variant(heldout=3, linked=10),
    "all_explore": Variant(explore=10),
    "all_linked_explore": Variant(linked=10, explore=10),
    "all_linked_clean": Variant(linked=10, clean=True),
    "all_linked_prop": Variant(linked=10, clean=True, propagate=0.5),
    "all_linked_explore_prop": Variant(linked=10, explore=10, clean=True, propagate=0.5),
    "all_explore_clean": Variant(explore=10, clean=True),
    "all_linked_explore_clean": Variant(linked=10, explore=10, clean=True),
    "all_linked_explore_clean_heldout_s3": Variant(heldout=3, linked=10, explore=10, clean=True),
    "all_linked_explore_prop_heldout_s3": Variant(
        heldout=3, linked=10, explore=10, clean=True, propagate=0.5
    ),
}
DAY = 86400.0


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    spec = load_spec(args.spec)
    raw = load_handbook(Path(args.data) if args.data else None)
    if args.customer_fraction < 1.0:
        customers = raw["CUSTOMER_ID"].unique()
        chosen = rng.choice(customers, int(len(customers) * args.customer_fraction), replace=False)
        raw = raw.loc[raw["CUSTOMER_ID"].isin(chosen)].reset_index(drop=True)
    _log(f"{len(raw):,} records")
    risk = RiskConfig(
        columns=tuple(spec.secondary_entity_columns),
        time_column="TX_DATETIME",
        id_column="TRANSACTION_ID",
        windows=tuple(args.risk_windows),
    )
    stage = prepare_stage(args, raw, spec, risk, rng)
    variants = {name: BASE_VARIANTS[name] for name in args.variants}
    labels = raw["TX_FRAUD"].to_numpy()
    day_all = raw["TX_TIME_DAYS"].to_numpy()
    replay, june = stage["replay"], stage["june"]
    threshold = stage["threshold"]

    test = raw.iloc[replay].reset_index(drop=True)
    n = len(test)
    day = day_all[replay]
    first_day = int(day.min())
    day = day - first_day
    n_days = int(day.max()) + 1
    y = labels[replay]
    scenario = raw["TX_FRAUD_SCENARIO"].to_numpy()[replay]
    customers = test["CUSTOMER_ID"].to_numpy()
    u = stage["u_raw"] / threshold
    numeric = stage["numeric_all"][replay]
    deep = np.hstack([u[:, None], stage["latents"], stage["errors"], numeric])

    # Risk features: per variant, day by day, from the labels that variant knows.
    horizon_days = int(np.ceil(risk.horizon_seconds / DAY)) + 1
    replay_ids = raw["TRANSACTION_ID"].astype(str).to_numpy()[replay]
    day_index = [np.flatnonzero(day == d) for d in range(n_days)]
    start_of = pd.Timestamp(args.train_end)
    risk_names = risk.feature_names()
    # The linked lane ranks by the share of confirmed frauds among the terminal's payments
    # over the longest window (as the product's lane does).
    link_column = max(i for i, name in enumerate(risk_names) if "_fraud_share_" in name)

    def risk_for_days(
        first: int, last: int, known_rows: np.ndarray, known_day: np.ndarray
    ) -> np.ndarray:
        """Risk features of the records of days first..last (one call for the span)."""
        lo = np.searchsorted(day_all, first_day + first - horizon_days, side="left")
        hi = np.searchsorted(day_all, first_day + last, side="right")
        frame = raw.iloc[lo:hi][["TRANSACTION_ID", "TX_DATETIME", *risk.columns]]
        frauds = pd.DataFrame(
            {
                "record_id": replay_ids[known_rows],
                "known_at": start_of + pd.to_timedelta(known_day, unit="D"),
            }
        )
        targets = replay[np.concatenate(day_index[first : last + 1])] - lo
        return build_risk_features(frame, frauds, risk, targets=targets).to_numpy("float64")

    # Verdicts given by day d - 1 are known by day d + delay at the latest, and later ones
    # are known only after it: the risk features of days d..d + delay are settled at the
    # start of day d, so they are computed in one call per span (the same values as day by
    # day, at an eighth of the cost).
    risk_ready = {name: -1 for name in args.variants}

    n_risk = len(risk_names)
    served = {"unsupervised": u.copy()}
    prob = {name: np.zeros(n) for name in variants}
    risk_of: dict[str, np.ndarray] = {}
    teams: dict[str, Team] = {}
    for name, variant in variants.items():
        served[name] = u.copy()
        risk_of[name] = np.zeros((n, n_risk))
        teams[name] = Team(n, variant.heldout)
    models: dict[str, BoostedTrees | None] = {name: None for name in variants}
    floors: dict[str, NoveltyFloor | None] = {name: None for name in variants}
    same_labels_source = args.same_labels_from or (
        "all" if "all" in variants else next(iter(variants))
    )
    served["supervised_same_labels"] = np.zeros(n)
    served["supervised_all_labels"] = np.zeros(n)
    sup_model: dict[str, BoostedTrees | None] = {
        "supervised_same_labels": None,
        "supervised_all_labels": None,
    }
    all_risk = stage["all_risk"]
    june_numeric = stage["numeric_all"][june]
    june_pos = np.full(len(raw), -1)
    june_pos[june] = np.arange(len(june))
    replay_in_june = june_pos[replay]

    def design(name: str, rows: np.ndarray) -> np.ndarray:
        variant = variants[name]
        parts = [deep[rows] if variant.deep else u[rows, None]]
        if variant.risk:
            parts.append(risk_of[name][rows])
        return np.hstack(parts)

    def fit(X: np.ndarray, target: np.ndarray) -> BoostedTrees:
        return BoostedTrees.fit(X, target, seed=args.seed, max_iter=args.trees)

    fit_log: list[dict] = []
    first_update = None
    for d in range(n_days):
        if d and d % args.update_every == 0:
            t0 = time.perf_counter()
            for name in variants:
                known = teams[name].labelled_before(d)
                if y[known].sum() < args.min_frauds:
                    continue
                variant = variants[name]
                pool = all_pool = np.setdiff1d(np.flatnonzero(day < d), known)
                linked_pool = pool[risk_of[name][pool, link_column] > 0]
                if variant.clean:  # paid where a confirmed fraud was: not presumed normal
                    pool = pool[risk_of[name][pool, link_column] == 0]
                extra = rng.choice(
                    pool,
                    min(len(pool), args.unlabelled_per_label * len(known), args.max_unlabelled),
                    replace=False,
                )
                rows = np.concatenate([known, extra])
                target = np.where(np.isin(rows, known), y[rows], 0)
                if variant.propagate > 0 and len(linked_pool):
                    # Presumed frauds at a share of them (unweighted rows: scikit-learn's
                    # weighted binning costs ten times the fit).
                    k = int(round(variant.propagate * len(linked_pool)))
                    linked_pick = rng.choice(linked_pool, k, replace=False)
                    rows = np.concatenate([rows, linked_pick])
                    target = np.concatenate([target, np.ones(k, dtype=int)])
                models[name] = fit(design(name, rows), target)
                # The product's rule: the floor's reference is the presumed normals' u.
                floors[name] = NoveltyFloor.fit(
                    u[extra], cap=args.floor_cap, below=args.floor_below
                )
                if name == same_labels_source:  # the same-labels baseline: same verdicts
                    plain = extra
                    if variant.clean:  # a plain random sample of the unlabelled records
                        plain = rng.choice(all_pool, len(extra), replace=False)
                    sup_rows = np.concatenate([known, plain])
                    sup_X = np.hstack([numeric[sup_rows], risk_of[name][sup_rows]])
                    sup_model["supervised_same_labels"] = fit(sup_X, target[: len(sup_rows)])
            if not args.skip_all_labels:  # all labels, delay days late, June onwards
                cut = first_day + d - args.label_delay_days
                seen = np.flatnonzero(day_all[june] < cut)
                frauds = seen[labels[june][seen] == 1]
                normals = seen[labels[june][seen] == 0]
                if len(normals) > args.max_all_label_normals:
                    normals = rng.choice(normals, args.max_all_label_normals, replace=False)
                rows = np.concatenate([frauds, normals])
                sup_model["supervised_all_labels"] = fit(
                    np.hstack([june_numeric[rows], all_risk[rows]]), labels[june][rows]
                )
            if first_update is None and all(m is not None for m in models.values()):
                first_update = d
            counts = {k: int(len(t.labelled_before(d))) for k, t in teams.items()}
            fit_log.append({"day": d, "seconds": time.perf_counter() - t0, "labels": counts})
            _log(
                f"day {d}: models updated in {fit_log[-1]['seconds']:.0f}s, labels "
                f"{fit_log[-1]['labels']}"
            )
        today = day_index[d]
        for name, variant in variants.items():
            # Lanes are given per 100 daily cards; a smaller team keeps the same shares.
            linked_k = round(variant.linked * args.cards_per_day / 100)
            explore_k = round(variant.explore * args.cards_per_day / 100)
            if variant.risk:
                if d > risk_ready[name]:
                    last = min(d + args.label_delay_days, n_days - 1)
                    known = np.flatnonzero(np.isfinite(teams[name].known_day))
                    known = known[y[known] == 1]
                    span = np.concatenate(day_index[d : last + 1])
                    risk_of[name][span] = risk_for_days(
                        d, last, known, teams[name].known_day[known]
                    )
                    risk_ready[name] = last
            if models[name] is not None:
                p = models[name].predict_proba(design(name, today))
                prob[name][today] = p
                served[name][today] = served_score(u[today], p, 0.5, floors[name])
            k_top = args.cards_per_day - linked_k - explore_k
            reviewed = top_cards(today, customers, served[name], k_top)
            if linked_k:
                extra_rows = linked_cards(
                    today, customers, risk_of[name][:, link_column], reviewed, linked_k
                )
                reviewed = np.concatenate([reviewed, extra_rows])
            if explore_k:
                # Uncertainty: p nearest 0.5 (before the first model, the next by u).
                doubt = prob[name] * (1 - prob[name]) if models[name] is not None else u
                picked = top_cards(today[~np.isin(customers[today], customers[reviewed])],
                                   customers, doubt, explore_k)  # fmt: skip
                reviewed = np.concatenate([reviewed, picked])
            teams[name].review(reviewed, d, args.label_delay_days, scenario)
        if sup_model["supervised_same_labels"] is not None:
            X = np.hstack([numeric[today], risk_of[same_labels_source][today]])
            served["supervised_same_labels"][today] = sup_model[
                "supervised_same_labels"
            ].predict_proba(X)
        if sup_model["supervised_all_labels"] is not None:
            pos = replay_in_june[today]
            X = np.hstack([june_numeric[pos], all_risk[pos]])
            served["supervised_all_labels"][today] = sup_model[
                "supervised_all_labels"
            ].predict_proba(X)

    if args.skip_all_labels:
        served.pop("supervised_all_labels")
    if first_update is None:
        raise RuntimeError("no variant got enough labels for a model; lengthen the replay")
    # Post hoc, on the same models and reviews (the team worked from the served rule): the
    # re-ranker's p alone, the old unbounded rule max(u, p/0.5), and other floor caps.
    posthoc_floor = {
        (cap, below): NoveltyFloor.fit(stage["u_normal"] / threshold, cap=cap, below=below)
        for cap in args.posthoc_caps
        for below in args.posthoc_below
    }
    for name in [v for v in variants if v.startswith(("all_heldout", "all_explore_clean"))]:
        has_p = prob[name] > 0
        served[f"{name} [p only, post hoc]"] = np.where(has_p, prob[name], u * 1e-6)
        served[f"{name} [max(u, p/0.5), post hoc]"] = np.where(
            has_p, np.maximum(u, prob[name] / 0.5), u
        )
        for (cap, below), floor in posthoc_floor.items():
            served[f"{name} [cap {cap:g} below {below:g}, post hoc]"] = np.where(
                has_p, served_score(u, prob[name], 0.5, floor), u
            )
    evaluated = day >= first_update
    test_eval = test.loc[evaluated].reset_index(drop=True)
    results = {}
    for name, scores in served.items():
        s = scores[evaluated]
        results[name] = quality(test_eval, s)
        per_day = []
        for d in range(first_update, n_days):
            rows = day_index[d]
            per_day.append(
                card_precision_at_k(
                    np.zeros(len(rows)), customers[rows], y[rows], scores[rows], k=100
                )
            )
        results[name]["cp100_per_day"] = per_day
        r = results[name]
        _log(
            f"{name}: AUPRC {r['all']['auprc']:.3f} CP@100 {r['all']['cp100']:.3f} "
            f"s2 AUPRC {r['scenario_2']['auprc']:.3f} s3 AUROC {r['scenario_3']['auroc']:.4f}"
        )
    # What each team ended up labelling, per scenario (frauds) and in all.
    labelled = {}
    for name, team in teams.items():
        rows = np.flatnonzero(np.isfinite(team.known_day))
        labelled[name] = {
            "records": int(len(rows)),
            **{f"scenario_{s}_frauds": int((scenario[rows] == s).sum()) for s in SCENARIOS},
        }
        _log(f"{name} labelled: {labelled[name]}")
    thresholds = threshold_effect(u, y, day, first_update, n_days, args)
    meta = _meta(args, len(raw), int(stage["n_normal_train"]), int(stage["n_fit"]), n)
    meta.update(
        {
            "test": f"replay {args.train_end} to {args.test_end} (exclusive), {n:,} records; "
            f"figures from replay day {first_update} "
            f"({(start_of + pd.Timedelta(days=first_update)).date()}) on: "
            f"{int(evaluated.sum()):,} records",
            "protocol": {
                k: v
                for k, v in vars(args).items()
                if k not in ("out", "markdown", "data", "spec", "cache")
            },
            "vae_fit_seconds": stage["fit_seconds"],
        }
    )
    if args.arrays:  # for post hoc study of other served rules without a new replay
        np.savez_compressed(
            args.arrays,
            u=u,
            y=y,
            day=day,
            scenario=scenario,
            customers=customers,
            evaluated=evaluated,
            **{f"prob_{k}": v for k, v in prob.items()},
            **{f"risk_{k}": v for k, v in risk_of.items()},
        )
    return {
        "meta": meta,
        "results": results,
        "thresholds": thresholds,
        "updates": fit_log,
        "labelled": labelled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--spec", default=str(SPEC_FILE))
    parser.add_argument("--train-end", default="2018-07-01")
    parser.add_argument("--test-end", default="2018-10-01")
    parser.add_argument("--all-labels-from", default="2018-06-01")
    parser.add_argument("--customer-fraction", type=float, default=1.0)
    parser.add_argument("--cards-per-day", type=int, default=100)
    parser.add_argument("--label-delay-days", type=int, default=7)
    parser.add_argument("--update-every", type=int, default=7)
    parser.add_argument("--risk-windows", nargs="+", default=["1D", "7D", "28D"])
    parser.add_argument("--max-train-rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--min-frauds", type=int, default=20)
    parser.add_argument("--unlabelled-per-label", type=int, default=5)
    parser.add_argument("--max-unlabelled", type=int, default=100_000)
    parser.add_argument("--max-all-label-normals", type=int, default=200_000)
    parser.add_argument(
        "--same-labels-from",
        default=None,
        help="the variant whose team's labels train supervised_same_labels (default: all)",
    )
    parser.add_argument(
        "--skip-all-labels",
        action="store_true",
        help="no supervised_all_labels (a quicker run while developing a queue policy)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants", nargs="+", default=list(BASE_VARIANTS), choices=list(BASE_VARIANTS)
    )
    parser.add_argument(
        "--floor-cap",
        type=float,
        default=DEFAULT_FLOOR_CAP,
        help="the served rule's bound on the unsupervised floor",
    )
    parser.add_argument(
        "--floor-below",
        type=float,
        default=DEFAULT_FLOOR_BELOW,
        help="the floor's weight below the flag line",
    )
    parser.add_argument("--posthoc-caps", type=float, nargs="*", default=[1.25, 1.5, 2.0, 3.0])
    parser.add_argument("--posthoc-below", type=float, nargs="*", default=[0.0, 0.1, 0.3, 1.0])
    parser.add_argument(
        "--cache", default=None, help="folder for the cached first stage (VAE outputs, features)"
    )
    parser.add_argument("--out", required=True, help="the report (JSON)")
    parser.add_argument("--plot", default=None, help="PNG of Card Precision@100 per day")
    parser.add_argument("--arrays", default=None, help="npz of u, p and risk per variant")
    args = parser.parse_args(argv)
    args.test_start = args.train_end  # the replay is the test period (for the shared meta)
    args.models = ["vae_context"]
    args.dataset, args.customers = "handbook", None  # for the shared metadata
    torch.set_num_threads(args.threads)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    if args.plot:
        plot_per_day(report, Path(args.plot))
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
