"""Tables from dev-pool runs: per-set AUROC vs cached PyOD baselines, and the half/half check.

    python -m benchmarks.devpool_report --pyod benchmarks/results/devpool_pyod.json \
        --vigil benchmarks/results/devpool_vigil.json [--screen screen.json ...]

Candidates are (model, config, variant) columns. The half/half check splits the sets into
two halves (every other set in the pool order, so both halves hold shared and dev sets),
picks the candidate with the best mean AUROC on one half and reports it on the other,
both ways round; the selection never sees the half it is measured on.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from benchmarks.devpool import SHARED


def load(pyod: list[str], vigil: list[str], screen: list[str]) -> pd.DataFrame:
    rows = []
    for path in pyod + vigil:
        data = json.loads(open(path).read())
        run_tag = "default" if path in pyod else data.get("meta", {}).get("tag", "default")
        for r in data["results"]:
            # Runs tagged other than "default" (``devpool --tag``) are their own candidates.
            tag = r["model"] if run_tag == "default" else f"{r['model']}:{run_tag}"
            rows.append({**r, "candidate": tag})
    for path in screen:
        data = json.loads(open(path).read())
        model = data.get("model", "vae")
        for r in data["rows"]:
            rows.append({**r, "seed": 0, "candidate": f"{model}[{r['config']}]{r['variant']}"})
    frame = pd.DataFrame(rows)
    return frame.groupby(["candidate", "dataset"])[["auroc", "auprc"]].mean().reset_index()


def table(frame: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    return frame.pivot(index="dataset", columns="candidate", values=metric)


def order(sets: list[str]) -> list[str]:
    shared = [s for s in SHARED if s in sets]
    return shared + [s for s in sets if s not in shared]


def summary(wide: pd.DataFrame, candidates: list[str], pyod: list[str]) -> pd.DataFrame:
    best_pyod = wide[pyod].max(axis=1)
    best_pyod_mean = wide[pyod].mean().max()
    best_model = wide[pyod].mean().idxmax()
    out = []
    for c in candidates:
        gap = wide[c] - best_pyod
        out.append(
            {
                "candidate": c,
                "mean": wide[c].mean(),
                "vs_best_pyod_mean": wide[c].mean() - best_pyod_mean,
                "wins_vs_best_model": int((wide[c] >= wide[best_model]).sum()),
                "wins_vs_best_pyod_per_set": int((gap >= 0).sum()),
                "worst_gap": gap.min(),
                "worst_set": gap.idxmin(),
            }
        )
    return pd.DataFrame(out).sort_values("mean", ascending=False)


def half_half(wide: pd.DataFrame, candidates: list[str], pyod: list[str]) -> list[dict]:
    sets = order(list(wide.index))
    halves = [sets[0::2], sets[1::2]]
    out = []
    for pick, measure in ((0, 1), (1, 0)):
        chosen = wide.loc[halves[pick], candidates].mean().idxmax()
        on = wide.loc[halves[measure]]
        best_pyod_mean = on[pyod].mean().max()
        best_pyod_name = on[pyod].mean().idxmax()
        gap = on[chosen] - on[pyod].max(axis=1)
        wins_model = int((on[chosen] >= on[best_pyod_name]).sum())
        out.append(
            {
                "chosen_on": halves[pick],
                "measured_on": halves[measure],
                "chosen": chosen,
                "mean": float(on[chosen].mean()),
                "best_pyod": best_pyod_name,
                "best_pyod_mean": float(best_pyod_mean),
                "wins": int((gap >= 0).sum()),
                "wins_vs_best_model": wins_model,
                "n": len(gap),
                "worst_gap": float(gap.min()),
            }
        )
    return out


def write_markdown(wide: pd.DataFrame, ours: list[str], pyod: list[str], args) -> None:
    """Per-set table (ours, each PyOD model, the best PyOD per set, ours minus it)."""
    head = [*ours, *pyod, "best PyOD"] + [f"{c} - best" for c in ours]
    lines = [
        f"| set | {' | '.join(head)} |",
        "|---|" + "---:|" * len(head),
    ]
    best = wide[pyod].max(axis=1)
    for name, row in wide.iterrows():
        cells = [f"{row[c]:.3f}" for c in [*ours, *pyod]] + [f"{best[name]:.3f}"]
        cells += [f"{row[c] - best[name]:+.3f}" for c in ours]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    means = [f"**{wide[c].mean():.3f}**" for c in [*ours, *pyod]] + [f"{best.mean():.3f}"]
    means += [f"{(wide[c] - best).mean():+.3f}" for c in ours]
    lines.append(f"| mean ({len(wide)} sets) | {' | '.join(means)} |")
    for c in ours:
        gap = wide[c] - best
        top = wide[pyod].mean().idxmax()
        lines.append("")
        lines.append(
            f"{c}: >= {top} (best PyOD mean) on {int((wide[c] >= wide[top]).sum())}/{len(gap)} "
            f"sets; >= the best PyOD model of each set on {int((gap >= 0).sum())}/{len(gap)}; "
            f"mean {wide[c].mean():.3f} vs the best PyOD mean "
            f"({wide[pyod].mean().idxmax()}) {wide[pyod].mean().max():.3f}; worst set "
            f"{gap.idxmin()} {gap.min():+.3f}."
        )
    with open(args.markdown, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyod", nargs="+", required=True)
    parser.add_argument("--vigil", nargs="*", default=[])
    parser.add_argument("--screen", nargs="*", default=[])
    parser.add_argument("--only", nargs="*", default=None, help="candidates in the per-set table")
    parser.add_argument("--metric", default="auroc")
    parser.add_argument("--exclude", nargs="*", default=[], help="candidates left out")
    parser.add_argument("--prefix", nargs="*", default=[], help="only candidates starting so")
    parser.add_argument("--markdown", default=None, help="write the per-set table here")
    args = parser.parse_args(argv)
    frame = load(args.pyod, args.vigil, args.screen)
    wide = table(frame, args.metric)
    pyod = [c for c in wide.columns if c.startswith("pyod_")]
    wide = wide.dropna(subset=pyod)
    wide = wide.loc[order(list(wide.index))]
    candidates = [
        c
        for c in wide.columns
        if c not in pyod
        and wide[c].notna().all()
        and c not in set(args.exclude)
        and (not args.prefix or c.startswith(tuple(args.prefix)))
    ]
    pd.set_option("display.width", 250, "display.max_rows", 500, "display.max_columns", 50)
    print(summary(wide, candidates, pyod).to_string(index=False, float_format="%.4f"))
    print()
    for h in half_half(wide, candidates, pyod):
        print(
            f"chosen on {len(h['chosen_on'])} sets: {h['chosen']}; on the other "
            f"{h['n']}: mean {h['mean']:.4f} vs best PyOD ({h['best_pyod']}) "
            f"{h['best_pyod_mean']:.4f}; >= {h['best_pyod']} on {h['wins_vs_best_model']}/"
            f"{h['n']}; >= the best PyOD model per set on {h['wins']}/{h['n']}; "
            f"worst gap {h['worst_gap']:.3f}"
        )
    if args.markdown:
        write_markdown(wide, [c for c in (args.only or []) if c in wide.columns], pyod, args)
    if args.only:
        cols = [c for c in args.only if c in wide.columns] + pyod
        shown = wide[cols].copy()
        shown["best_pyod"] = wide[pyod].max(axis=1)
        print()
        print(shown.to_string(float_format="%.3f"))
        print("mean", " ".join(f"{v:.3f}" for v in shown.mean().to_numpy(dtype=np.float64)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
