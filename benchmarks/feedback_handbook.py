"""All labels known: vigil's labelled model beside a tuned gradient-boosting baseline.

    python -m benchmarks feedback --only handbook      [--dataset cards]

Protocol (Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection*,
Chapters 5-6): train on 7 days, 7 days of label delay, test on the next 7 days; every
training record's label is known (chargebacks arrive for most frauds, days late); the test
days leave out the customers already known compromised (a fraud in the training week or in
the delay period before that day); Card Precision@100 removes the cards found on earlier
test days. The model selection of both models is the same: a small grid, chosen on the
mean average precision of validation folds that end before the test week (the same
protocol shifted one and two weeks back).

Models, both ``HistGradientBoostingClassifier`` on the same training records:

- ``baseline``: the handbook's 15 engineered features (amount, weekend, night; the card's
  number of payments and mean amount over 1/7/30 days; the terminal's number of payments
  and fraud share over 1/7/30 days, 7 days late), computed here for any card / terminal /
  amount / time columns;
- ``vigil``: what vigil's labelled model reads: the spec's context features
  (``prepare_records``), the verdict-driven risk features of the secondary entity
  (``feedback.risk``: frauds known by ``known_at`` = payment + delay), and the
  unsupervised VAE's score, latent means and per-feature errors (fit on normals before
  every training fold). ``vigil served`` is the served rule ``max(p / 0.5, floor(u))``
  with the product's gated, bounded floor (``feedback.novelty``); other floors on the same
  scores are in the JSON (``[post hoc]``).
- ``vigil (no VAE)``: the same without the unsupervised model's outputs (what it adds).

``--dataset cards``: the same on the generated card stream (``demo_cards``: five fraud
types, merchants as the secondary entity), so the gain is not tuned to one simulator;
``--heldout KIND`` additionally trains vigil with one fraud type's frauds never labelled
(presumed normal) and reports that type's AUROC under the unsupervised score and under
the served score (the novelty floor's job); ``--select-floor`` chooses the floor's gate and
weight on the validation folds with the held-out types presumed normal there too
(``feedback_floor``), and reports the test week with that choice beside the default.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.feedback_floor import floor_trials
from benchmarks.feedback_handbook_report import figures  # noqa: F401 (the runner reads it here)
from benchmarks.sequences import SPEC_FILE, load_handbook
from detectors import VAEDetector
from detectors import metrics as m
from pipelines.feedback.novelty import (
    DEFAULT_FLOOR_BELOW,
    DEFAULT_FLOOR_CAP,
    DEFAULT_FLOOR_GATE,
    NoveltyFloor,
    served_score,
)
from pipelines.feedback.reranker import BoostedTrees, detector_outputs
from pipelines.feedback.risk import RiskConfig, build_risk_features
from pipelines.intake.spec import DatasetSpec, load_spec
from pipelines.modeling.bundle import ScoringBundle, prepare_records

DAY = 86400.0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Stream:
    """A card stream in time order, with the columns the protocol needs."""

    frame: pd.DataFrame
    spec: DatasetSpec
    card: str
    terminal: str
    amount: str
    time: str
    label: str
    kind: np.ndarray  # fraud type per record ("" for normal), for per-type figures
    start: pd.Timestamp  # the first training day of the test fold
    cached: dict = field(default_factory=dict)  # what no seed changes, computed once


def handbook_stream(path: str | None) -> Stream:
    raw = load_handbook(Path(path) if path else None)
    # 30 days of history before the earliest validation fold (2018-07-11), VAE normals
    # from June, nothing after the test week.
    keep = (raw["TX_DATETIME"] >= "2018-05-01") & (raw["TX_DATETIME"] < "2018-08-15")
    raw = raw.loc[keep].reset_index(drop=True)
    kind = raw["TX_FRAUD_SCENARIO"].map({0: "", 1: "s1", 2: "s2", 3: "s3"}).to_numpy()
    return Stream(
        raw,
        load_spec(SPEC_FILE),
        "CUSTOMER_ID",
        "TERMINAL_ID",
        "TX_AMOUNT",
        "TX_DATETIME",
        "TX_FRAUD",
        kind.astype(str),
        pd.Timestamp("2018-07-25"),
    )


def cards_stream(n_cards: int, seed: int) -> Stream:
    from pipelines.demo_cards import CARD_SPEC, FRAUD_TYPES
    from pipelines.demo_sequences import generate_typology_set

    frame = generate_typology_set(
        n_cards=n_cards, days=58, seed=seed, start="2026-01-05", typologies=FRAUD_TYPES
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return Stream(
        frame,
        CARD_SPEC,
        "card_id",
        "merchant_id",
        "amount",
        "timestamp",
        "is_fraud",
        frame["fraud_kind"].fillna("").astype(str).to_numpy(),
        pd.Timestamp("2026-01-05") + pd.Timedelta(days=37),
    )


# -- the handbook's features, for any card/terminal/amount/time columns ---------------------


def _window_sums(keys, seconds, values, far: float, near: float) -> np.ndarray:
    """Per record: the sum of ``values`` over records of the same key with time in
    (t - far, t - near] (the record itself included when near = 0)."""
    codes = pd.factorize(keys)[0].astype("float64")
    span = float(seconds.max() - seconds.min()) + far + 10.0
    axis = codes * span + (seconds - seconds.min())
    order = np.argsort(axis, kind="stable")
    sorted_axis = axis[order]
    cumulative = np.concatenate([[0.0], np.cumsum(values[order])])
    right = np.searchsorted(sorted_axis, axis - near, side="right")
    left = np.searchsorted(sorted_axis, axis - far, side="right")
    return cumulative[right] - cumulative[left]


def handbook_features(s: Stream, delay_days: int = 7) -> pd.DataFrame:
    """The handbook's 15 features (Chapter 3), vectorised."""
    f = s.frame
    when = pd.to_datetime(f[s.time])
    seconds = (when - pd.Timestamp(0)).dt.total_seconds().to_numpy()
    amount = f[s.amount].to_numpy("float64")
    ones = np.ones(len(f))
    fraud = f[s.label].to_numpy("float64")
    out = {
        "amount": amount,
        "weekend": (when.dt.day_of_week >= 5).to_numpy(float),
        "night": (when.dt.hour <= 6).to_numpy(float),
    }
    cards = f[s.card].to_numpy()
    for w in (1, 7, 30):
        n = _window_sums(cards, seconds, ones, w * DAY, 0.0)
        out[f"card_nb_tx_{w}d"] = n
        out[f"card_avg_amount_{w}d"] = _window_sums(cards, seconds, amount, w * DAY, 0.0) / n
    terminals = f[s.terminal].to_numpy()
    delay = delay_days * DAY
    for w in (1, 7, 30):
        n = _window_sums(terminals, seconds, ones, delay + w * DAY, delay)
        frauds = _window_sums(terminals, seconds, fraud, delay + w * DAY, delay)
        out[f"terminal_nb_tx_{w}d"] = n
        out[f"terminal_risk_{w}d"] = np.divide(frauds, n, out=np.zeros_like(n), where=n > 0)
    return pd.DataFrame(out)


# -- vigil's design --------------------------------------------------------------------------


def vigil_features(s: Stream, args) -> tuple[np.ndarray, list[str], dict]:
    """Context features, label-driven risk features and the VAE's outputs, per record."""
    if "features" not in s.cached:
        started = time.perf_counter()
        s.cached["features"] = prepare_records(s.spec, s.frame).features
        _log(f"context features in {time.perf_counter() - started:.0f}s")
    features = s.cached["features"]
    columns = s.spec.model_feature_columns
    y = s.frame[s.label].to_numpy()
    ids = s.frame[s.spec.id_column].astype(str).to_numpy()
    when = pd.to_datetime(s.frame[s.time])
    frauds = pd.DataFrame(
        {
            "record_id": ids[y == 1],
            "known_at": when[y == 1] + pd.Timedelta(days=args.delay_days),
        }
    )
    # Delay-aware: a window of w days counts the terminal's frauds (and payments) from
    # [t - delay - w, t - delay), each only once its label was known; without the delay a
    # window shorter than the label delay would never hold a known fraud.
    risk = RiskConfig(
        columns=(s.terminal,),
        time_column=s.time,
        id_column=s.spec.id_column,
        windows=tuple(args.risk_windows),
        delay=f"{args.risk_delay_days}D" if args.risk_delay_days else "0s",
        records=args.risk_records,
    )
    if "risk" not in s.cached:
        s.cached["risk"] = build_risk_features(
            s.frame[[s.spec.id_column, s.time, s.terminal]], frauds, risk
        ).to_numpy("float64")
    risk_frame = s.cached["risk"]
    # The VAE: normals of the weeks before the earliest validation fold.
    earliest = s.start - pd.Timedelta(days=14 + 14)
    since = earliest - pd.Timedelta(days=35)
    normal = np.flatnonzero(((when >= since) & (when < earliest)).to_numpy() & (y == 0))
    rng = np.random.default_rng(args.seed)
    if len(normal) > args.max_vae_rows:
        normal = np.sort(rng.choice(normal, args.max_vae_rows, replace=False))
    detector = VAEDetector(
        seed=args.seed,
        target_fpr=0.01,
        range_features=list(s.spec.range_checked_features) or None,
        epochs=args.epochs,
    )
    started = time.perf_counter()
    detector.fit(features.iloc[normal][columns])
    vae_seconds = time.perf_counter() - started
    _log(f"VAE fit on {len(normal):,} normals in {vae_seconds:.0f}s")
    needed = np.flatnonzero((when >= earliest).to_numpy())
    u = np.full(len(when), np.nan)
    bundle = ScoringBundle(s.spec, detector)
    started = time.perf_counter()
    scores, errors, latents = detector_outputs(bundle, features.iloc[needed][columns], None)
    _log(f"VAE outputs for {len(needed):,} records in {time.perf_counter() - started:.0f}s")
    u[needed] = np.asarray(scores) / float(detector.threshold_.value)
    deep = np.hstack([errors.to_numpy("float64"), np.asarray(latents, dtype="float64")])
    deep_rows = np.full((len(when), deep.shape[1]), np.nan)
    deep_rows[needed] = deep
    numeric = features[columns].apply(pd.to_numeric, errors="coerce").to_numpy("float64")
    names = (
        list(columns)
        + risk.feature_names()
        + ["unsupervised_score"]
        + [f"err_{c}" for c in errors.columns]
        + [f"z_{i}" for i in range(np.asarray(latents).shape[1])]
    )
    X = np.hstack([numeric, risk_frame, u[:, None], deep_rows])
    n_plain = numeric.shape[1] + risk_frame.shape[1]
    u_normal = u[needed][y[needed] == 0]
    return X, names, {"n_plain": n_plain, "vae_seconds": vae_seconds, "u_normal": u_normal}


# -- the protocol ----------------------------------------------------------------------------


def split(s: Stream, train_start: pd.Timestamp, delay_days: int, days: int = 7):
    """Training rows, test rows (known-compromised cards removed, day by day)."""
    when = pd.to_datetime(s.frame[s.time])
    day = ((when - train_start) / pd.Timedelta(days=1)).to_numpy()
    y = s.frame[s.label].to_numpy()
    cards = s.frame[s.card].to_numpy()
    train = np.flatnonzero((day >= 0) & (day < days))
    known = set(cards[train][y[train] == 1])
    test = []
    for d in range(days):
        delay_day = np.flatnonzero((day >= days + d - 1) & (day < days + d)) if d else []
        known |= set(cards[delay_day][y[delay_day] == 1]) if len(delay_day) else set()
        rows = np.flatnonzero((day >= days + delay_days + d) & (day < days + delay_days + d + 1))
        test.append(rows[~np.isin(cards[rows], list(known))])
    return train, np.concatenate(test), np.floor(day).astype(int)


def card_precision_handbook(days, cards, y, scores, k: int = 100) -> float:
    """The handbook's CP@k: per day the top k cards; cards found on earlier days leave."""
    frame = pd.DataFrame({"day": days, "card": cards, "y": y, "s": scores})
    found: set = set()
    per_day = []
    for _, today in frame.groupby("day", sort=True):
        today = today.loc[~today["card"].isin(found)]
        top = today.groupby("card").agg(s=("s", "max"), y=("y", "max"))
        top = top.sort_values("s", ascending=False).head(k)
        hits = top.index[top["y"] == 1]
        per_day.append(len(hits) / k)
        found |= set(hits)
    return float(np.mean(per_day))


def evaluate(s: Stream, rows, days, scores) -> dict:
    y = s.frame[s.label].to_numpy()[rows]
    kind = s.kind[rows]
    out = {
        "all": {
            "auroc": m.auroc(y, scores),
            "ap": m.auprc(y, scores),
            "cp100": card_precision_handbook(
                days[rows], s.frame[s.card].to_numpy()[rows], y, scores
            ),
            "frauds": int(y.sum()),
        }
    }
    for k in sorted(set(kind) - {""}):
        keep = (kind == "") | (kind == k)
        yk = (kind[keep] == k).astype(int)
        if 0 < yk.sum() < len(yk):
            out[k] = {
                "auroc": m.auroc(yk, scores[keep]),
                "ap": m.auprc(yk, scores[keep]),
                "frauds": int(yk.sum()),
            }
    return out


def _fit(X, y, params, seed) -> BoostedTrees:
    return BoostedTrees.fit(X, y, seed=seed, **params)


def tune(s: Stream, X: np.ndarray, y: np.ndarray, args) -> tuple[dict, list[dict]]:
    """The grid, scored by mean AP over the validation folds before the test week."""
    trials = []
    grid = {
        "max_depth": [None if d == 0 else d for d in args.grid_depths],
        "max_iter": args.grid_trees,
        "learning_rate": args.grid_rates,
    }
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        aps = []
        for back in args.validation_weeks:
            train, test, _ = split(s, s.start - pd.Timedelta(days=7 * back), args.delay_days)
            model = _fit(X[train], y[train], params, args.seed)
            aps.append(m.auprc(y[test], model.predict_proba(X[test])))
        trials.append({"params": params, "ap": float(np.mean(aps))})
    best = max(trials, key=lambda t: t["ap"])
    return best["params"], trials


def load_stream(args) -> Stream:
    stream = (
        handbook_stream(args.data)
        if args.dataset == "handbook"
        else cards_stream(args.cards, args.data_seed)
    )
    y = stream.frame[stream.label].to_numpy()
    _log(f"{len(stream.frame):,} records, {int(y.sum()):,} frauds ({args.dataset})")
    started = time.perf_counter()
    stream.cached["baseline"] = handbook_features(stream, args.delay_days).to_numpy("float64")
    _log(f"handbook features in {time.perf_counter() - started:.0f}s")
    return stream


def run(args, stream: Stream) -> dict:
    """One seed: the VAE, both models' tuning and the test week."""
    torch.manual_seed(args.seed)
    y = stream.frame[stream.label].to_numpy()
    base_X = stream.cached["baseline"]
    vigil_X, names, info = vigil_features(stream, args)
    designs = {
        "baseline (handbook 15 features)": base_X,
        "vigil": vigil_X,
        "vigil (no VAE)": vigil_X[:, : info["n_plain"]],
    }
    train, test, days = split(stream, stream.start, args.delay_days)
    results, tuning, scores = {}, {}, {}
    for name, X in designs.items():
        started = time.perf_counter()
        if name == "vigil (no VAE)":  # an ablation: vigil's chosen settings, not re-tuned
            params, trials = tuning["vigil"]["chosen"], []
        elif name.startswith("baseline") and "baseline_tuning" in stream.cached:
            # No seed enters the baseline (its features are fixed; the trees neither
            # subsample nor stop early): tuned once, the same for every seed.
            params, trials = stream.cached["baseline_tuning"]
        else:
            params, trials = tune(stream, X, y, args)
        if name.startswith("baseline"):
            stream.cached["baseline_tuning"] = (params, trials)
        model = _fit(X[train], y[train], params, args.seed)
        p = model.predict_proba(X[test])
        scores[name] = p
        results[name] = evaluate(stream, test, days, p)
        seconds = time.perf_counter() - started
        tuning[name] = {"chosen": params, "trials": trials, "seconds": seconds}
        r = results[name]["all"]
        _log(f"{name}: {params} AUROC {r['auroc']:.4f} AP {r['ap']:.3f} CP@100 {r['cp100']:.3f}")
    u = vigil_X[:, names.index("unsupervised_score")]
    u_normal_train = u[train][(y[train] == 0) & np.isfinite(u[train])]
    floor = NoveltyFloor.fit(
        u_normal_train, cap=args.floor_cap, below=args.floor_below, gate=args.floor_gate
    )
    results["vigil served: max(p/0.5, floor(u))"] = evaluate(
        stream, test, days, served_score(u[test], scores["vigil"], 0.5, floor)
    )
    # Other floors on the same p and u: the rule before the gate (the detector's 1% line,
    # full weight below it), and the gate's and the weight's neighbours.
    floors = {
        "ungated, below x1 (previous rule)": NoveltyFloor.fit(
            u_normal_train, cap=args.floor_cap, below=1.0, gate=0.0
        )
    }
    for gate in args.posthoc_gates:
        for below in args.posthoc_below:
            floors[f"gate {gate:g}, below x{below:g}"] = NoveltyFloor.fit(
                u_normal_train, cap=args.floor_cap, below=below, gate=gate
            )
    for label, other in floors.items():
        results[f"vigil served, {label} [post hoc]"] = evaluate(
            stream, test, days, served_score(u[test], scores["vigil"], 0.5, other)
        )
    selection = None
    if args.select_floor:
        # The floor's (gate, below) chosen on the validation folds (held-out types presumed
        # normal there too), then applied once to the test week.
        folds = [
            split(stream, stream.start - pd.Timedelta(days=7 * back), args.delay_days)[:2]
            for back in args.validation_weeks
        ]
        started = time.perf_counter()
        selection = floor_trials(
            folds,
            vigil_X,
            u,
            y,
            stream.kind,
            args.heldout,
            lambda X, t: _fit(X, t, tuning["vigil"]["chosen"], args.seed),
            args.select_gates,
            args.select_below,
            args.floor_cap,
            args.select_tolerance,
        )
        selection["seconds"] = time.perf_counter() - started
        _log(f"floor chosen on validation: {selection['chosen']}")
        chosen_floor = NoveltyFloor.fit(
            u_normal_train,
            cap=args.floor_cap,
            below=selection["chosen"]["below"],
            gate=selection["chosen"]["gate"],
        )
        results["vigil served, floor chosen on validation"] = evaluate(
            stream, test, days, served_score(u[test], scores["vigil"], 0.5, chosen_floor)
        )
    results["unsupervised (VAE score)"] = evaluate(stream, test, days, u[test])
    heldout = {}
    for kind in args.heldout:
        y_known = np.where(stream.kind == kind, 0, y)  # never labelled: presumed normal
        params = tuning["vigil"]["chosen"]
        model = _fit(vigil_X[train], y_known[train], params, args.seed)
        p = model.predict_proba(vigil_X[test])
        # The floor's reference is what the product has: the presumed normals, this
        # type's frauds among them.
        presumed = u[train][(y_known[train] == 0) & np.isfinite(u[train])]
        floor_k = NoveltyFloor.fit(
            presumed, cap=args.floor_cap, below=args.floor_below, gate=args.floor_gate
        )
        served = served_score(u[test], p, 0.5, floor_k)
        keep = np.isin(stream.kind[test], ["", kind])
        yk = (stream.kind[test][keep] == kind).astype(int)
        if yk.sum() == 0:
            continue
        heldout[kind] = {
            "frauds": int(yk.sum()),
            "unsupervised_auroc": m.auroc(yk, u[test][keep]),
            "served_auroc": m.auroc(yk, served[keep]),
            "p_auroc": m.auroc(yk, p[keep]),
            "all_ap_served": m.auprc(y[test], served),
            "posthoc": {
                label: {
                    "served_auroc": m.auroc(yk, served_score(u[test], p, 0.5, other)[keep]),
                    "all_ap_served": m.auprc(y[test], served_score(u[test], p, 0.5, other)),
                }
                for label, other in (
                    (label, NoveltyFloor.fit(presumed, cap=f.cap, below=f.below, gate=f.gate))
                    for label, f in floors.items()
                )
            },
        }
        if selection is not None:
            c = selection["chosen"]
            floor_k = NoveltyFloor.fit(
                presumed, cap=args.floor_cap, below=c["below"], gate=c["gate"]
            )
            served = served_score(u[test], p, 0.5, floor_k)
            heldout[kind]["chosen_served_auroc"] = m.auroc(yk, served[keep])
            heldout[kind]["chosen_all_ap_served"] = m.auprc(y[test], served)
        _log(f"held out {kind}: {heldout[kind]}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "meta": {
            "dataset": args.dataset,
            "records": len(stream.frame),
            "train": {
                "start": str(stream.start.date()),
                "rows": int(len(train)),
                "frauds": int(y[train].sum()),
            },
            "test": {"rows": int(len(test)), "frauds": int(y[test].sum())},
            "protocol": {k: v for k, v in vars(args).items() if k not in ("out", "data")},
            "vae_seconds": info["vae_seconds"],
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "features": {"vigil": names},
        },
        "results": results,
        "tuning": tuning,
        "heldout": heldout,
        "floor_selection": selection,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["handbook", "cards"], default="handbook")
    parser.add_argument("--data", default=None)
    parser.add_argument("--cards", type=int, default=1500)
    parser.add_argument("--delay-days", type=int, default=7)
    parser.add_argument("--validation-weeks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--risk-windows", nargs="+", default=["1D", "7D", "28D"])
    parser.add_argument(
        "--risk-delay-days", type=int, default=7, help="the risk windows' delay (0: none)"
    )
    parser.add_argument(
        "--risk-records",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the risk windows' record counts beside the fraud counts and shares",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-vae-rows", type=int, default=60_000)
    parser.add_argument("--heldout", nargs="*", default=[])
    parser.add_argument("--grid-depths", type=int, nargs="+", default=[3, 6, 0], help="0: none")
    parser.add_argument("--grid-trees", type=int, nargs="+", default=[50, 100, 300])
    parser.add_argument("--grid-rates", type=float, nargs="+", default=[0.1])
    parser.add_argument("--floor-cap", type=float, default=DEFAULT_FLOOR_CAP)
    parser.add_argument("--floor-below", type=float, default=DEFAULT_FLOOR_BELOW)
    parser.add_argument("--floor-gate", type=float, default=DEFAULT_FLOOR_GATE)
    parser.add_argument("--posthoc-gates", type=float, nargs="*", default=[2.0, 3.0, 4.0])
    parser.add_argument("--posthoc-below", type=float, nargs="*", default=[0.01, 0.05, 0.1])
    parser.add_argument(
        "--select-floor",
        action="store_true",
        help="choose the floor's gate and weight on the validation folds (held-out types)",
    )
    parser.add_argument("--select-gates", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument(
        "--select-below", type=float, nargs="+", default=[0.002, 0.01, 0.05, 0.1, 0.2]
    )
    parser.add_argument("--select-tolerance", type=float, default=0.005)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=0, help="the generated stream's seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    stream = load_stream(args)
    per_seed = []
    for seed in args.seeds:
        args.seed = seed
        per_seed.append(run(args, stream))
    report = {"meta": per_seed[0]["meta"], "seeds": per_seed}
    report["meta"]["seeds"] = list(args.seeds)
    report["meta"]["cpu_seconds"] = per_seed[-1]["meta"]["cpu_seconds"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
