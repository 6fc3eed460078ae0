"""The typology set measured through the CLI, exactly as a user would run it.

    python -m benchmarks typologies [--cards 2500 --epochs 8 --detectors seq_vae,vae]
    python -m benchmarks typologies --only variants [--data-seeds own 101 102]

Generates ``generate_typology_set`` and writes it as two CSV files: the training file
(every day but the last ``--score-days``) and the next period (the last days); the
variants ``gen2*`` take their data from the second generator, ``benchmarks.cardgen2``,
written apart from the first (``--variants gen2 gen2_seed1``). Then, in a
fresh ``VIGIL_HOME``, it runs the user's commands as subprocesses:

1. ``vigil spec init --entity-col card_id --time-col timestamp --ignore-col fraud_kind``
   (the spec as proposed, not edited);
2. ``vigil train --detectors seq_vae,seq_gan,vae`` (``vae`` on a sequence spec is the
   context VAE: raw + context features; it holds out the latest 20% for evaluation);
3. ``vigil score --data next.csv --model NAME/VERSION --out scores.parquet`` for each
   model, as a separate batch that reads the kept entity history.

IsolationForest is not a vigil detector: it is fitted here on the same context features
of the training file's normal records (1%-FPR threshold on the latest 20% of them) and
scores the next period with the same history. Metrics on the next period: AUROC / AUPRC
overall and per typology (normals + that typology's frauds), precision at 100 and 1,000
flags per day, the FPR of each model's own 1% threshold on the period's normals
("hold-out FPR"), recall there, and fit seconds (as ``vigil train`` reports them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from benchmarks.cardgen2 import generate_cards2
from benchmarks.sequences import queue_quality, typology_rows
from detectors.encoding import TabularEncoder
from detectors.thresholds import Threshold
from pipelines.demo_sequences import TYPOLOGIES, generate_typology_set
from pipelines.intake.spec import load_spec
from pipelines.modeling.bundle import prepare_records

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO_ROOT / "benchmarks" / "RESULTS.md"
#: Every typology the generator can plant (the five default ones and the breached merchant).
ALL_TYPOLOGIES = (*TYPOLOGIES, "compromised_merchant")
#: A type (or the whole queue) that falls more than this below its kept AUROC / AUPRC fails.
TOLERANCE = 0.01
#: Independent variants of the typology generator: sizes, spans, fraud rates, fraud mixes
#: and seeds. Defaults are judged across all of them (a win on one that loses on another is
#: no win); ``demo`` is the demo's own stream settings, measured, never tuned on.
VARIANTS: dict[str, dict] = {
    "demo": {
        "cards": 1500,
        "days": 21,
        "score_days": 7,
        "data_seed": 2026,
        "generator": {
            "start": "2026-03-02",
            "typologies": (
                "card_testing",
                "account_takeover",
                "impossible_travel",
                "compromised_merchant",
                "contextual",
            ),
        },
    },
    "short": {"cards": 600, "days": 21, "score_days": 7, "data_seed": 1, "generator": {}},
    "long": {"cards": 600, "days": 45, "score_days": 10, "data_seed": 2, "generator": {}},
    "rare": {
        "cards": 1000,
        "days": 28,
        "score_days": 7,
        "data_seed": 3,
        "generator": {"fraud_share": 0.002},
    },
    "dense": {
        "cards": 600,
        "days": 21,
        "score_days": 7,
        "data_seed": 4,
        "generator": {"fraud_share": 0.012, "typologies": ALL_TYPOLOGIES},
    },
    # The second generator (``benchmarks.cardgen2``), written apart from the first: its own
    # customers, merchants and fraud, never looked at while the defaults were chosen.
    "gen2": {"cards": 1000, "days": 30, "score_days": 6, "data_seed": 0, "source": "cardgen2"},
    "gen2_seed1": {
        "cards": 1000,
        "days": 30,
        "score_days": 6,
        "data_seed": 1,
        "source": "cardgen2",
    },
}
VIGIL = str(Path(sys.executable).with_name("vigil"))


def generate(args: argparse.Namespace) -> pd.DataFrame:
    """The variant's data from its generator; the truth column is ``fraud_kind`` either way
    (``spec init`` is told to ignore it)."""
    if getattr(args, "source", "typologies") == "cardgen2":
        frame = generate_cards2(
            n_cards=args.cards,
            days=args.days,
            seed=args.data_seed,
            **getattr(args, "generator", {}),
        )
        return frame.rename(columns={"fraud_type": "fraud_kind"})
    return generate_typology_set(
        n_cards=args.cards,
        days=args.days,
        seed=args.data_seed,
        **getattr(args, "generator", {}),
    )


def data_call(args: argparse.Namespace) -> str:
    """The generator call, for the report."""
    name = (
        "generate_cards2" if getattr(args, "source", "") == "cardgen2" else "generate_typology_set"
    )
    return f"{name}(n_cards={args.cards}, days={args.days}, seed={args.data_seed})"


def write_files(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path, dict]:
    """The training file and the next period's file, as CSV (the way a user gets them)."""
    frame = generate(args)
    when = pd.to_datetime(frame["timestamp"])
    cut = when.min().normalize() + pd.Timedelta(days=args.days - args.score_days)
    train, later = frame[when < cut], frame[when >= cut]
    train_path, next_path = workdir / "train.csv", workdir / "next.csv"
    train.to_csv(train_path, index=False)
    later.to_csv(next_path, index=False)
    sizes = {
        "rows": len(frame),
        "cards": args.cards,
        "fraud_share": float(frame["is_fraud"].mean()),
        "train_rows": len(train),
        "next_rows": len(later),
        "next_frauds": {k: int((later["fraud_kind"] == k).sum()) for k in ALL_TYPOLOGIES},
    }
    return train_path, next_path, sizes


def user_environment(workdir: Path) -> dict:
    """The environment of a user's commands: their own ``VIGIL_HOME`` under ``workdir``
    (created), the embedded default (no Prefect API)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VIGIL_HOME": str(workdir / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    return env


def vigil(*arguments: str, env: dict, log: list) -> tuple[str, float]:
    """Run one vigil command; its output and seconds are kept in ``log``."""
    started = time.perf_counter()
    done = subprocess.run(
        [VIGIL, *arguments], env=env, capture_output=True, text=True, timeout=7200
    )
    seconds = time.perf_counter() - started
    log.append(
        {
            "command": "vigil " + " ".join(arguments),
            "seconds": seconds,
            "stdout": done.stdout[-4000:],
            "stderr": done.stderr[-2000:],
        }
    )
    if done.returncode != 0:
        raise RuntimeError(f"vigil {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    print(f"vigil {arguments[0]}: {seconds:.0f}s", file=sys.stderr)
    return done.stdout, seconds


def _json_tail(text: str) -> dict:
    """The JSON object a ``--json`` command printed (after any progress lines)."""
    return json.loads(text[text.index("{") :])


def isolation_forest(spec_path: Path, train: pd.DataFrame, later: pd.DataFrame, seed: int):
    """(scores on the next period, threshold, fit seconds) on the spec's context features."""
    spec = load_spec(spec_path)
    started = time.perf_counter()
    both = pd.concat([train, later], ignore_index=True)
    features = prepare_records(spec, both).features
    columns = spec.model_feature_columns
    is_train = np.arange(len(both)) < len(train)
    normal = np.flatnonzero(is_train & (both[spec.label_column].to_numpy() == 0))
    n_cal = len(normal) // 5  # the latest 20% (rows are in time order)
    encoder = TabularEncoder()
    x_fit = encoder.fit_transform(features.iloc[normal[:-n_cal]][columns])
    forest = IsolationForest(random_state=seed, n_jobs=1).fit(x_fit)
    x_cal = encoder.transform(features.iloc[normal[-n_cal:]][columns])
    threshold = Threshold.for_fpr(-forest.score_samples(x_cal), 0.01).value
    fit_seconds = time.perf_counter() - started
    scores = -forest.score_samples(encoder.transform(features.loc[~is_train, columns]))
    return scores, float(threshold), fit_seconds


def registered_models(env: dict, refs: list[str]) -> list[dict]:
    """``--reuse``: the trained models as ``vigil train --json`` lists them, read back from
    MLflow (metrics of the version's training run: fit seconds, hold-out FPR, ...)."""
    os.environ["VIGIL_HOME"] = env["VIGIL_HOME"]
    from mlflow import MlflowClient

    from pipelines.modeling.registry import configure_mlflow
    from pipelines.settings import get_settings

    configure_mlflow(get_settings())
    client = MlflowClient()
    models = []
    for ref in refs:
        name, version = ref.split("/")
        run_id = client.get_model_version(name, version).run_id
        models.append(
            {"model": name, "version": version, "metrics": client.get_run(run_id).data.metrics}
        )
    return models


def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir).resolve()
    env = user_environment(workdir)
    log: list[dict] = []
    spec_path = workdir / "spec.yaml"
    if args.reuse:
        return measure(args, workdir, env, log, registered_models(env, args.reuse), None)
    train_path, next_path, sizes = write_files(args, workdir)
    print(f"wrote {sizes['train_rows']:,} + {sizes['next_rows']:,} rows", file=sys.stderr)
    vigil(
        "spec",
        "init",
        "--data",
        str(train_path),
        "--id-col",
        "transaction_id",
        "--label-col",
        "is_fraud",
        "--entity-col",
        "card_id",
        "--time-col",
        "timestamp",
        "--ignore-col",
        "fraud_kind",
        "--name",
        "typologies",
        "--out",
        str(spec_path),
        env=env,
        log=log,
    )
    train_args = [
        "train",
        "--data",
        str(train_path),
        "--spec",
        str(spec_path),
        "--detectors",
        args.detectors,
        "--json",
    ]
    if args.epochs:
        train_args += ["--epochs", str(args.epochs)]
    if args.max_train_rows:
        train_args += ["--max-train-rows", str(args.max_train_rows)]
    if args.seed:
        train_args += ["--seed", str(args.seed)]
    out, train_seconds = vigil(*train_args, env=env, log=log)
    return measure(args, workdir, env, log, _json_tail(out)["models"], train_seconds)


def measure(args, workdir: Path, env: dict, log: list, models: list, train_seconds) -> dict:
    """Score the next period with each trained model (``vigil score``) and IsolationForest."""
    train_path, next_path, spec_path = (
        workdir / "train.csv",
        workdir / "next.csv",
        workdir / "spec.yaml",
    )
    later = pd.read_csv(next_path)
    train = pd.read_csv(train_path)
    sizes = {
        "rows": len(train) + len(later),
        "cards": args.cards,
        "fraud_share": float(pd.concat([train["is_fraud"], later["is_fraud"]]).mean()),
        "train_rows": len(train),
        "next_rows": len(later),
        "next_frauds": {
            k: int((later["fraud_kind"] == k).sum())
            for k in ALL_TYPOLOGIES
            if (later["fraud_kind"] == k).any()
        },
    }
    labels = later["is_fraud"].to_numpy().astype(int)
    groups = later["fraud_kind"].fillna("").to_numpy()
    when = pd.to_datetime(later["timestamp"])
    days = (when - when.min().normalize()).dt.days.to_numpy()
    results: dict = {}
    for model in models:
        name, version = model["model"], model["version"]
        kind = name.rsplit("-", 1)[-1]
        scores_path = workdir / f"scores_{kind}.parquet"
        out, score_seconds = vigil(
            "score",
            "--data",
            str(next_path),
            "--model",
            f"{name}/{version}",
            "--out",
            str(scores_path),
            "--json",
            env=env,
            log=log,
        )
        scored = pd.read_parquet(scores_path).set_index("record_id")
        scores = scored["score"].reindex(later["transaction_id"].astype(str)).to_numpy(float)
        threshold = float(_json_tail(out)["threshold"])
        results[kind] = {
            **queue_quality(labels, groups, days, scores, threshold, list(ALL_TYPOLOGIES)),
            "fit_seconds": float(model["metrics"]["fit_seconds"]),
            "score_command_seconds": score_seconds,
            "train_holdout": {
                k: model["metrics"].get(k) for k in ("auroc", "auprc", "holdout_fpr", "threshold")
            },
            "unscored": int(np.isnan(scores).sum()),
        }
    scores, threshold, fit_seconds = isolation_forest(spec_path, train, later, args.seed)
    results["iforest"] = {
        **queue_quality(labels, groups, days, scores, threshold, list(ALL_TYPOLOGIES)),
        "fit_seconds": fit_seconds,
    }
    return {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": f"{data_call(args)}; next period = last {args.score_days} days",
            "sizes": sizes,
            "epochs": args.epochs,
            "max_train_rows": args.max_train_rows,
            "load_average": os.getloadavg(),
            "train_command_seconds": train_seconds,
        },
        "spec": spec_path.read_text(),
        "commands": log,
        "results": results,
    }


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: per model, AUROC per typology and overall, the daily queue's
    precision, the threshold's FPR on the next period, fit and score seconds."""
    if "variants" in report:
        return variant_figures(report)
    meta, sizes = report["meta"], report["meta"]["sizes"]
    lines = [
        f"Data {meta['data']}: {sizes['rows']:,} records, {sizes['cards']:,} cards, "
        f"{sizes['fraud_share']:.2%} fraud; training file {sizes['train_rows']:,} rows, next "
        f"period {sizes['next_rows']:,} rows (frauds: "
        + ", ".join(f"{k} {v}" for k, v in sizes["next_frauds"].items())
        + f"). `vigil train --epochs {meta['epochs'] or 'default'} --max-train-rows "
        f"{meta['max_train_rows'] or 'default'}`, then one `vigil score` batch per model "
        "reading the kept history; IsolationForest on the same context features, fitted "
        "here. Typology columns: AUROC on the next period's normals + that typology's "
        "frauds (AUPRC in brackets). Test frauds are few: +-0.01 AUROC is noise.",
    ]
    if meta.get("note"):
        lines[-1] += f" {meta['note'][0].upper()}{meta['note'][1:]}."
    lines += [
        "",
        "| model | " + " | ".join(TYPOLOGIES) + " | all AUROC | AUPRC | P@100/day | "
        "P@1000/day | hold-out FPR | recall at threshold | fit s |",
        "|---|" + "---:|" * (len(TYPOLOGIES) + 7),
    ]
    for row, r in zip(typology_rows(report), report["results"].values(), strict=True):
        cells = row.split(" | ")
        for i, t in enumerate(TYPOLOGIES, start=1):
            if t in r:
                cells[i] += f" ({r[t]['auprc']:.3f})"
        lines.append(" | ".join(cells))
    return lines


def variant_runs(names: list[str], data_seeds: list[str]) -> dict[str, dict]:
    """{run name: variant settings}: each variant on each data seed. ``own`` is the
    variant's own seed and keeps its name; another seed runs as ``NAME@SEED``, so it is
    compared only with kept figures of that same seed (a new seed is never judged against
    another seed's draw of frauds)."""
    runs = {}
    for name in names:
        for seed in data_seeds:
            if seed == "own" or int(seed) == VARIANTS[name]["data_seed"]:
                runs[name] = VARIANTS[name]
            else:
                runs[f"{name}@{int(seed)}"] = {**VARIANTS[name], "data_seed": int(seed)}
    return runs


def _data_seed(text: str) -> str:
    if text != "own" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give 'own' or a non-negative integer")
    return text


def run_variants(args: argparse.Namespace) -> dict:
    """Each variant (on each data seed) through the CLI in its own folder, then the
    comparison with the kept figures (a fallen type is listed in the report's
    ``regressions``)."""
    root = Path(args.workdir)
    runs = variant_runs(args.variants, args.data_seeds)
    reports = {}
    for name, variant in runs.items():
        one = argparse.Namespace(**{**vars(args), **variant, "workdir": str(root / name)})
        print(f"variant {name}: {variant}", file=sys.stderr)
        reports[name] = run(one)
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "variants": runs,
            "epochs": args.epochs,
            "max_train_rows": args.max_train_rows,
            "detectors": args.detectors,
            "tolerance": TOLERANCE,
            "load_average": os.getloadavg(),
        },
        "variants": reports,
    }
    kept = kept_figures(Path(args.kept))
    report["compared"], report["regressions"] = compare(variant_table(report), kept)
    report["accepted"] = bool(args.accept)
    return report


VARIANT_COLUMNS = [*ALL_TYPOLOGIES, "all AUROC", "AUPRC"]


def variant_table(report: dict) -> dict[tuple[str, str], dict[str, float]]:
    """{(variant, model): {typology or 'all AUROC' / 'AUPRC': figure}}."""
    table = {}
    for name, single in report["variants"].items():
        for model, r in single["results"].items():
            row = {t: r[t]["auroc"] for t in ALL_TYPOLOGIES if t in r}
            row["all AUROC"], row["AUPRC"] = r["all"]["auroc"], r["all"]["auprc"]
            table[(name, model)] = row
    return table


def kept_figures(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The variant table of the typologies section of RESULTS.md ({} where none is kept)."""
    if not path.exists():
        return {}
    text = path.read_text()
    start, end = "<!-- typologies:start -->", "<!-- typologies:end -->"
    if start not in text or end not in text:
        return {}
    header: list[str] | None = None
    kept = {}
    for line in text[text.index(start) : text.index(end)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["variant", "model"]:
            header = cells
            continue
        if header is None or not line.startswith("|") or set(cells[0]) <= set("-: "):
            continue
        row = {}
        for column, cell in zip(header[2:], cells[2:], strict=False):
            try:
                row[column] = float(cell.split()[0])
            except (ValueError, IndexError):
                continue
        kept[(cells[0], cells[1])] = row
    return kept


def compare(now: dict, kept: dict) -> tuple[int, list[dict]]:
    """(figures compared, the ones that fell more than TOLERANCE below the kept value)."""
    compared, fallen = 0, []
    for key, row in now.items():
        for column, value in row.items():
            before = kept.get(key, {}).get(column)
            if before is None:
                continue
            compared += 1
            if value < before - TOLERANCE:
                fallen.append(
                    {
                        "variant": key[0],
                        "model": key[1],
                        "figure": column,
                        "kept": before,
                        "now": value,
                        "drop": before - value,
                    }
                )
    return compared, fallen


def regression_banner(report: dict) -> str:
    n = len(report["regressions"])
    accepted = " (accepted with --accept)" if report.get("accepted") else ""
    return (
        f"**REGRESSION{accepted}: {n} figure(s) fell more than {TOLERANCE} below the figures "
        "kept in RESULTS.md.**"
    )


def regression_lines(fallen: list[dict]) -> list[str]:
    return [
        f"- {f['variant']} / {f['model']} / {f['figure']}: {f['kept']:.3f} kept, "
        f"{f['now']:.3f} now (-{f['drop']:.3f})"
        for f in fallen
    ]


def variant_figures(report: dict) -> list[str]:
    """RESULTS.md lines of a variants run: the regression verdict first, then one row per
    (variant, model): AUROC per typology, overall AUROC and AUPRC (the kept figures the
    next run is compared with)."""
    meta = report["meta"]
    if report.get("regressions"):
        # In RESULTS.md one line (the console run lists them one per line).
        fallen = "; ".join(line[2:] for line in regression_lines(report["regressions"]))
        lines = [f"{regression_banner(report)} {fallen}.", ""]
    elif report.get("compared"):
        lines = [
            f"No figure fell more than {TOLERANCE} below the kept ones "
            f"({report['compared']} compared).",
            "",
        ]
    else:
        lines = ["No kept figures to compare with: these become the kept ones.", ""]
    lines.append(
        "Variants of `generate_typology_set` (cards, days, last days scored, seed, "
        + (
            "generator options; `cardgen2`: the second generator, `benchmarks.cardgen2`): "
            if any(v.get("source") for v in meta["variants"].values())
            else "generator options): "
        )
        + "; ".join(
            f"{name} {v['cards']}/{v['days']}/{v['score_days']}/{v['data_seed']}"
            + (f" {v['source']}" if v.get("source") else "")
            + (f" {v['generator']}" if v.get("generator") else "")
            for name, v in meta["variants"].items()
        )
        + f". Each through `vigil spec init` (defaults), `vigil train --detectors "
        f"{meta['detectors']} --epochs {meta['epochs'] or 'default'} --max-train-rows "
        f"{meta['max_train_rows'] or 'default'}`, `vigil score`; IsolationForest on the "
        "same context features. AUROC per typology on the scored days' normals + its "
        "frauds; '-' where the variant plants none."
    )
    lines += [
        "",
        "| variant | model | " + " | ".join(VARIANT_COLUMNS) + " | frauds |",
        "|---|---|" + "---:|" * (len(VARIANT_COLUMNS) + 1),
    ]
    for (name, model), row in variant_table(report).items():
        cells = [f"{row[c]:.3f}" if c in row else "-" for c in VARIANT_COLUMNS]
        frauds = report["variants"][name]["results"][model]["all"]["frauds"]
        lines.append(f"| {name} | {model} | " + " | ".join(cells) + f" | {frauds} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--score-days", type=int, default=12)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--seed", type=int, default=0, help="the models' seed (vigil train and IsolationForest)"
    )
    parser.add_argument("--detectors", default="seq_vae,seq_gan,vae")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--workdir", default=".vigil/bench/typologies")
    parser.add_argument("--out", required=True, help="the report (JSON)")
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=None,
        metavar="NAME/VERSION",
        help="Skip data, spec and training: score these registered models of --workdir.",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=None,
        help="Run these generator variants (each its own data, spec, models) instead of "
        "--cards/--days, and compare them with the figures kept in --kept.",
    )
    parser.add_argument(
        "--data-seeds",
        nargs="+",
        type=_data_seed,
        default=["own"],
        metavar="SEED",
        help="With --variants: generate each variant from these seeds ('own': its own "
        "seed); another seed's rows are named VARIANT@SEED.",
    )
    parser.add_argument(
        "--kept", default=str(RESULTS_MD), help="RESULTS.md holding the kept variant figures"
    )
    parser.add_argument(
        "--accept",
        action="store_true",
        help="Exit 0 even when a figure fell (a deliberate change; its report says so).",
    )
    args = parser.parse_args(argv)
    report = run_variants(args) if args.variants else run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    for name, single in report.get("variants", {"": report}).items():
        for model, r in single["results"].items():
            a = r["all"]
            per = " ".join(f"{t} {r[t]['auroc']:.3f}" for t in ALL_TYPOLOGIES if t in r)
            print(
                f"{name} {model}: AUROC {a['auroc']:.4f} AUPRC {a['auprc']:.3f} hold-out FPR "
                f"{a.get('holdout_fpr', float('nan')):.2%}; {per}",
                file=sys.stderr,
            )
    fallen = report.get("regressions", [])
    if fallen:
        failed = Path(args.workdir) / "regressions.json"
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(json.dumps(report, indent=1, default=str))
        print(regression_banner(report), file=sys.stderr)
        for line in regression_lines(fallen):
            print(line, file=sys.stderr)
        print(f"the whole report: {failed}", file=sys.stderr)
        return 0 if args.accept else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
