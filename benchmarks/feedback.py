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
   then (+ a sample of unlabelled replay records as presumed normals); risk features are
   recomputed daily from the labels known before each record (exact: labels arrive at day
   boundaries).
4. Figures are over the days from the first model update on (before it, every vigil
   variant serves the unsupervised score and the baselines have no model).

Variants: ``unsupervised`` (u = VAE score / its threshold); ``risk_only`` (re-ranker on u +
risk features); ``rerank_only`` (re-ranker on u + latent means + per-feature errors + context
features, no risk features); ``all`` (everything); ``all_heldout_s3`` (``all`` whose analysts'
verdicts on scenario-3 frauds never become labels: the novel-pattern case); ``all_linked`` /
``all_linked_heldout_s3``: the same, with 10 of the 100 daily cards given to the cards that
paid where the most confirmed frauds are known (a "linked to confirmed fraud" lane). Served
score: the product's rule, ``max(p / 0.5, floor(u))`` (``NoveltyFloor``, its reference
refit at each update on the presumed normals' u). Baselines (HistGradientBoosting, same
code path, on raw + context + risk features, served p): ``supervised_same_labels``
trained on the labels the ``all`` team produced; ``supervised_all_labels`` on every
record's label with the same delay (the handbook's setting; training records from June
on, normals subsampled).
Threshold recalibration changes no ranking: it is reported separately as flags/day and
precision at a fixed 1%-FPR threshold vs a weekly alert-budget threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.sequences import (
    SCENARIOS,
    SPEC_FILE,
    _meta,
    card_precision_at_k,
    load_handbook,
    quality,
)
from detectors import VAEDetector
from pipelines.feedback.reranker import (
    DEFAULT_FLOOR_BELOW,
    DEFAULT_FLOOR_CAP,
    BoostedTrees,
    NoveltyFloor,
    detector_outputs,
    served_score,
)
from pipelines.feedback.risk import RiskConfig, build_risk_features
from pipelines.intake.spec import load_spec
from pipelines.modeling.bundle import ScoringBundle, prepare_records

# name: (reads latents/errors/context, reads risk, held-out scenario, linked-review cards,
# exploration cards: chosen by the labelled model's uncertainty)
BASE_VARIANTS = {
    "risk_only": (False, True, None, 0, 0),
    "rerank_only": (True, False, None, 0, 0),
    "all": (True, True, None, 0, 0),
    "all_heldout_s3": (True, True, 3, 0, 0),
    "all_linked": (True, True, None, 10, 0),
    "all_linked_heldout_s3": (True, True, 3, 10, 0),
    "all_explore": (True, True, None, 0, 10),
    "all_linked_explore": (True, True, None, 10, 10),
}
DAY = 86400.0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Team:
    """One simulated analyst team: what it has labelled and when each label is known."""

    def __init__(self, n: int, heldout: int | None) -> None:
        self.known_day = np.full(n, np.inf)  # replay-row index -> day the label is known
        self.heldout = heldout

    def review(self, rows: np.ndarray, day: int, delay: int, scenario: np.ndarray) -> None:
        keep = rows
        if self.heldout is not None:
            keep = rows[scenario[rows] != self.heldout]  # those verdicts never become labels
        self.known_day[keep] = np.minimum(self.known_day[keep], day + delay + 1)

    def labelled_before(self, day: int) -> np.ndarray:
        return np.flatnonzero(self.known_day <= day)


def top_cards(day_rows: np.ndarray, customers: np.ndarray, scores: np.ndarray, k: int):
    """Rows of the k cards with the highest score of the day (all their records that day)."""
    frame = pd.DataFrame({"row": day_rows, "card": customers[day_rows], "s": scores[day_rows]})
    best = frame.groupby("card")["s"].max().nlargest(k).index
    return frame.loc[frame["card"].isin(best), "row"].to_numpy()


def _cache_key(args: argparse.Namespace) -> str:
    """What the expensive first stage depends on (data, split, model settings, code)."""
    parts = {
        k: getattr(args, k)
        for k in (
            "data",
            "spec",
            "customer_fraction",
            "train_end",
            "test_end",
            "all_labels_from",
            "max_train_rows",
            "epochs",
            "seed",
            "risk_windows",
            "label_delay_days",
        )
    }
    code = [
        Path(__file__).parents[1] / f
        for f in (
            "detectors/vae.py",
            "detectors/context/features.py",
            "detectors/context/config.py",
            "pipelines/feedback/risk.py",
        )
    ]
    parts["code"] = [hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in code if f.exists()]
    parts["spec_text"] = Path(args.spec).read_text()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_stage(args, raw, spec, risk, rng) -> dict:
    """The unsupervised model and everything the replay reads from it, cached on disk
    (``--cache DIR``) because it costs most of a run and does not change between policies."""
    cache_file = Path(args.cache) / f"feedback-{_cache_key(args)}.npz" if args.cache else None
    if cache_file is not None and cache_file.exists():
        _log(f"stage 1 from cache {cache_file}")
        with np.load(cache_file, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
        out["fit_seconds"] = float(out["fit_seconds"])
        out["threshold"] = float(out["threshold"])
        return out
    started = time.perf_counter()
    features = prepare_records(spec, raw).features
    _log(f"context features in {time.perf_counter() - started:.0f}s")
    when = raw["TX_DATETIME"]
    labels = raw["TX_FRAUD"].to_numpy()
    train_mask = (when < pd.Timestamp(args.train_end)).to_numpy()
    replay = np.flatnonzero(
        ((when >= pd.Timestamp(args.train_end)) & (when < pd.Timestamp(args.test_end))).to_numpy()
    )
    normal_idx = np.flatnonzero(train_mask & (labels == 0))
    n_normal_train = len(normal_idx)
    if len(normal_idx) > args.max_train_rows:
        normal_idx = np.sort(rng.choice(normal_idx, args.max_train_rows, replace=False))
    columns = spec.model_feature_columns
    detector = VAEDetector(
        seed=args.seed,
        target_fpr=0.01,
        range_features=list(spec.range_checked_features) or None,
        **({"epochs": args.epochs} if args.epochs else {}),
    )
    started = time.perf_counter()
    detector.fit(features.iloc[normal_idx][columns])
    fit_seconds = time.perf_counter() - started
    _log(f"VAE fit on {len(normal_idx):,} normals in {fit_seconds:.0f}s")
    bundle = ScoringBundle(spec, detector)
    started = time.perf_counter()
    u_raw, errors, latents = detector_outputs(bundle, features.iloc[replay][columns], None)
    u_normal = detector.decision_function(features.iloc[normal_idx][columns])
    _log(f"VAE outputs for {len(replay):,} replay records in {time.perf_counter() - started:.0f}s")
    # The all-labels baseline: every record's label known delay days later, from June on.
    june = np.flatnonzero(
        (when >= pd.Timestamp(args.all_labels_from)).to_numpy()
        & (when < pd.Timestamp(args.test_end)).to_numpy()
    )
    day_all = raw["TX_TIME_DAYS"].to_numpy()
    all_known_day = day_all + args.label_delay_days + 1  # absolute day index
    fraud_rows = np.flatnonzero(labels == 1)
    ids_all = raw["TRANSACTION_ID"].astype(str).to_numpy()
    started = time.perf_counter()
    full_frauds = pd.DataFrame(
        {
            "record_id": ids_all[fraud_rows],
            "known_at": pd.Timestamp("2018-04-01")
            + pd.to_timedelta(all_known_day[fraud_rows], unit="D"),
        }
    )
    all_risk = build_risk_features(
        raw[["TRANSACTION_ID", "TX_DATETIME", *risk.columns]], full_frauds, risk, targets=june
    ).to_numpy("float64")
    _log(f"all-labels risk features in {time.perf_counter() - started:.0f}s")
    out = {
        "replay": replay,
        "june": june,
        "u_raw": np.asarray(u_raw, dtype="float64"),
        "latents": np.asarray(latents, dtype="float64"),
        "errors": errors.to_numpy(dtype="float64"),
        "numeric_all": features[columns].to_numpy(dtype="float64"),
        "u_normal": np.asarray(u_normal, dtype="float64"),
        "all_risk": all_risk,
        "threshold": float(detector.threshold_.value),
        "fit_seconds": fit_seconds,
        "n_normal_train": n_normal_train,
        "n_fit": len(normal_idx),
    }
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, **out)
        _log(f"stage 1 cached in {cache_file}")
    return out


def linked_cards(
    today: np.ndarray, customers: np.ndarray, link: np.ndarray, exclude: np.ndarray, k: int
) -> np.ndarray:
    """Rows of up to k cards, not already chosen, that paid today where analysts' confirmed
    frauds are most numerous (the "linked to confirmed fraud" lane of the queue)."""
    if k <= 0:
        return np.empty(0, dtype="int64")
    frame = pd.DataFrame({"row": today, "card": customers[today], "link": link[today]})
    frame = frame.loc[~frame["card"].isin(customers[exclude]) & (frame["link"] > 0)]
    best = frame.groupby("card")["link"].max().nlargest(k).index
    return frame.loc[frame["card"].isin(best), "row"].to_numpy()


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
    # The linked lane ranks by confirmed frauds at the entity over the longest window.
    link_column = max(i for i, name in enumerate(risk_names) if "_frauds_" in name)

    def risk_for_day(d: int, known_rows: np.ndarray, known_day: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(day_all, first_day + d - horizon_days, side="left")
        hi = np.searchsorted(day_all, first_day + d, side="right")
        frame = raw.iloc[lo:hi][["TRANSACTION_ID", "TX_DATETIME", *risk.columns]]
        frauds = pd.DataFrame(
            {
                "record_id": replay_ids[known_rows],
                "known_at": start_of + pd.to_timedelta(known_day, unit="D"),
            }
        )
        targets = replay[day_index[d]] - lo
        return build_risk_features(frame, frauds, risk, targets=targets).to_numpy("float64")

    n_risk = len(risk_names)
    served = {"unsupervised": u.copy()}
    prob = {name: np.zeros(n) for name in variants}
    risk_of: dict[str, np.ndarray] = {}
    teams: dict[str, Team] = {}
    for name, (_, _, heldout, _, _) in variants.items():
        served[name] = u.copy()
        risk_of[name] = np.zeros((n, n_risk))
        teams[name] = Team(n, heldout)
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
        reads_deep, uses_risk, _, _, _ = variants[name]
        parts = [deep[rows] if reads_deep else u[rows, None]]
        if uses_risk:
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
                pool = np.setdiff1d(np.flatnonzero(day < d), known)
                extra = rng.choice(
                    pool,
                    min(len(pool), args.unlabelled_per_label * len(known), args.max_unlabelled),
                    replace=False,
                )
                rows = np.concatenate([known, extra])
                target = np.where(np.isin(rows, known), y[rows], 0)
                models[name] = fit(design(name, rows), target)
                # The product's rule: the floor's reference is the presumed normals' u.
                floors[name] = NoveltyFloor.fit(
                    u[extra], cap=args.floor_cap, below=args.floor_below
                )
                if name == same_labels_source:  # the same-labels baseline: same verdicts
                    sup_X = np.hstack([numeric[rows], risk_of[name][rows]])
                    sup_model["supervised_same_labels"] = fit(sup_X, target)
            # All labels, delay days late, June onwards; normals subsampled.
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
        for name, (_, uses_risk, _, linked_k, explore_k) in variants.items():
            # Lanes are given per 100 daily cards; a smaller team keeps the same shares.
            linked_k = round(linked_k * args.cards_per_day / 100)
            explore_k = round(explore_k * args.cards_per_day / 100)
            if uses_risk:
                known = teams[name].labelled_before(d)  # known by the start of day d
                known = known[y[known] == 1]
                risk_of[name][today] = risk_for_day(d, known, teams[name].known_day[known])
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

    if first_update is None:
        raise RuntimeError("no variant got enough labels for a model; lengthen the replay")
    # Post hoc, on the same models and reviews (the team worked from the served rule): the
    # re-ranker's p alone, the old unbounded rule max(u, p/0.5), and other floor caps.
    posthoc_floor = {
        (cap, below): NoveltyFloor.fit(stage["u_normal"] / threshold, cap=cap, below=below)
        for cap in args.posthoc_caps
        for below in args.posthoc_below
    }
    for name in [v for v in ("all", "all_heldout_s3") if v in variants]:
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


def threshold_effect(u, y, day, first_update, n_days, args) -> dict:
    """Flags/day and precision: the 1%-FPR threshold vs a weekly alert-budget threshold set
    from the previous week's scores (budget = cards reviewed per day)."""
    fixed = {"flags": 0, "frauds": 0}
    budget = {"flags": 0, "frauds": 0}
    cut = None
    for d in range(first_update, n_days):
        if cut is None or (d - first_update) % args.update_every == 0:
            past = u[(day < d) & (day >= d - args.update_every)]
            wanted = args.cards_per_day * args.update_every
            cut = float(np.sort(past)[::-1][min(wanted, len(past) - 1)])
        rows = day == d
        for counter, line in ((fixed, 1.0), (budget, cut)):
            flagged = rows & (u > line)
            counter["flags"] += int(flagged.sum())
            counter["frauds"] += int(y[flagged].sum())
    days = n_days - first_update
    out = {}
    for name, c in (("fpr_1pct", fixed), ("budget", budget)):
        out[name] = {
            "flags_per_day": c["flags"] / days,
            "precision": c["frauds"] / c["flags"] if c["flags"] else None,
        }
    return out


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: each served variant's quality over the replay, overall and per
    scenario, what each team labelled, and the unsupervised score's two thresholds."""
    meta = report["meta"]
    p = meta["protocol"]
    lines = [
        f"{meta['rows']:,} records ({p['customer_fraction']:.0%} of the customers); VAE on raw "
        f"+ context features fit on {meta['train']}; {meta['test']}. Analysts review the top "
        f"{p['cards_per_day']} cards a day, labels known {p['label_delay_days']} days later, "
        f"models updated every {p['update_every']} days. Served rule of the vigil variants: "
        f"max(p / 0.5, floor(u)), floor capped at {p.get('floor_cap', 'n/a')}. "
        "`all_heldout_s3`: scenario-3 verdicts never become labels (a novel pattern); "
        "`*_linked`: 10% of the daily cards go to cards linked to confirmed fraud; "
        "`*_explore`: 10% to the cards the labelled model is least sure of (p nearest 0.5). "
        "Scenarios: " + "; ".join(f"s{k} {v}" for k, v in SCENARIOS.items()) + ". "
        "CP@100: Card Precision@100 per day. Post hoc served rules are in the JSON.",
        "",
    ]
    header = "| variant | all AUROC | all AUPRC | all CP@100 |"
    rule = "|---|---:|---:|---:|"
    for s in SCENARIOS:
        header += f" s{s} AUROC | s{s} AUPRC |"
        rule += "---:|---:|"
    lines += [header + " labelled records |", rule + "---:|"]
    labelled = report.get("labelled", {})
    for name, r in report["results"].items():
        if "post hoc" in name:
            continue
        cells = [f"{r['all']['auroc']:.4f}", f"{r['all']['auprc']:.3f}", f"{r['all']['cp100']:.3f}"]
        for s in SCENARIOS:
            part = r[f"scenario_{s}"]
            cells += [f"{part['auroc']:.4f}", f"{part['auprc']:.3f}"]
        team = labelled.get(name)
        cells.append(f"{team['records']:,}" if team else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    t = report["thresholds"]
    lines += [
        "",
        "Thresholds of the unsupervised score: fixed 1% FPR "
        f"{t['fpr_1pct']['flags_per_day']:.0f} flags/day, precision "
        f"{_fmt(t['fpr_1pct']['precision'])}; a weekly alert budget of {p['cards_per_day']}/day "
        f"{t['budget']['flags_per_day']:.0f} flags/day, precision "
        f"{_fmt(t['budget']['precision'])}.",
    ]
    return lines


def plot_per_day(report: dict, path: Path) -> None:
    """Card Precision@100 per replay day for the served variants (the analysts' daily view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = int(report["meta"]["test"].split("replay day ")[1].split(" ")[0])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, r in report["results"].items():
        if "post hoc" in name:
            continue
        series = np.asarray(r["cp100_per_day"])
        # A 7-day rolling mean: single days swing with the day's fraud count.
        smooth = pd.Series(series).rolling(7, min_periods=1).mean()
        style = "--" if name.startswith("supervised") else "-"
        ax.plot(
            np.arange(first, first + len(series)),
            smooth,
            style,
            label=f"{name} ({series.mean():.3f})",
        )
    ax.set_xlabel("replay day (0 = 2018-07-01)")
    ax.set_ylabel("Card Precision@100 (7-day mean)")
    ax.set_title("Handbook replay: what the top 100 cards of each day held")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
