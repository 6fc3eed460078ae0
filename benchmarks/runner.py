"""One runner for every benchmark suite: ``python -m benchmarks SUITE [--only STEP] [ARGS]``.

The suites and their default arguments are data (``suites.yaml``). The runner runs each
step of the suite (its module's ``main``, with the suite's arguments and then the ones
given here), keeps the suite's latest report as ``results/SUITE.json`` and rewrites that
suite's section of ``RESULTS.md``: the command, the date, the machine's load average
before and after, and the figures (the step module's ``figures``). Every other section of
RESULTS.md is kept. Figures are read off, never asserted: a run on a loaded machine says so
through its load.

``--report-only`` rewrites the section from the JSON already in ``results/`` without
running anything; ``--list`` prints the suites.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SUITES_FILE = HERE / "suites.yaml"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"

TITLE = [
    "# Benchmark results",
    "",
    "The current figures of each suite, one section per suite, each rewritten by "
    "`python -m benchmarks SUITE` (its JSON is `benchmarks/results/SUITE.json`). The "
    "machine's 1/5/15-minute load average is given beside each run: on a shared machine "
    "wall-clock figures are comparable only at similar loads; CPU seconds much less "
    "depend on it. Older runs and the experiments behind the defaults are in git history.",
]


def load_suites(path: Path | None = None) -> dict[str, dict]:
    """The suites, in file order, each with its steps named (a lone step takes the suite's
    name)."""
    suites = yaml.safe_load((path or SUITES_FILE).read_text())
    for name, suite in suites.items():
        steps = suite["steps"]
        for step in steps:
            step.setdefault("name", name)
            step.setdefault("args", [])
            step.setdefault("default", True)
            step["args"] = [str(a) for a in step["args"]]
        if len({s["name"] for s in steps}) != len(steps):
            raise ValueError(f"suite {name}: step names repeat")
    return suites


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_step(step: dict, extra: list[str]) -> dict:
    """Run one step in this process and return its report, stamped with how it ran."""
    module = importlib.import_module(step["module"])
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        out = Path(tmp) / "report.json"
        argv = [*step["args"], *extra, "--out", str(out)]
        started, load_before = datetime.now(UTC), load_average()
        code = module.main(argv)
        if code not in (None, 0):
            raise SystemExit(f"{step['module']} exited with {code}")
        report = json.loads(out.read_text())
    report["runner"] = {
        "command": " ".join(["python -m", step["module"], *(shlex.quote(a) for a in argv[:-2])]),
        "date": started.isoformat(timespec="seconds"),
        "load_before": load_before,
        "load_after": load_average(),
        "cores": os.cpu_count(),
    }
    return report


def read_results(suite: str, steps: list[dict], results_dir: Path) -> dict[str, dict]:
    """The latest report of each step, from ``results/SUITE.json`` ({} where none)."""
    path = results_dir / f"{suite}.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if len(steps) == 1:
        return {steps[0]["name"]: data}
    return data.get("steps", {})


def write_results(suite: str, steps: list[dict], reports: dict, results_dir: Path) -> Path:
    path = results_dir / f"{suite}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(steps) == 1:
        data = reports[steps[0]["name"]]
    else:
        data = {"steps": {s["name"]: reports[s["name"]] for s in steps if s["name"] in reports}}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def how_it_ran(report: dict) -> str:
    """One line: the command, the date and the load of a step's run."""
    ran = report.get("runner")
    if not ran:
        return "No command recorded."
    before, after = ran.get("load_before"), ran.get("load_after")
    pairs = (("before", before), ("after", after))
    text = {k: "/".join(f"{x:g}" for x in v) for k, v in pairs if v}
    if len(text) == 2:
        load_text = f"load {text['before']} → {text['after']}"
    elif text:
        load_text = f"load {next(iter(text.values()))} at the {'start' if before else 'end'}"
    else:
        load_text = "load not recorded"
    parts = [f"`{ran['command']}`", ran.get("date", "date not recorded"), load_text]
    if ran.get("cores"):
        parts.append(f"{ran['cores']} cores")
    line = " · ".join(parts)
    if ran.get("note"):
        line += f". {ran['note']}"
    return line


def section_lines(suite: str, about: str, steps: list[dict], reports: dict) -> list[str]:
    """The suite's section of RESULTS.md (without its markers)."""
    lines = [f"## {suite}", "", f"{about}.", ""]
    for step in steps:
        report = reports.get(step["name"])
        heading = f"### {suite}: {step['name']}" if len(steps) > 1 else ""
        if report is None:
            # One line for a step without figures: RESULTS.md stays short.
            lines += [
                (f"{heading} · " if heading else "") + "Not yet run through the runner "
                f"(`python -m benchmarks {suite}"
                + ("" if len(steps) == 1 else f" --only {step['name']}")
                + "`).",
                "",
            ]
            continue
        if heading:
            lines += [heading, ""]
        module = importlib.import_module(step["module"])
        lines += [how_it_ran(report), "", *module.figures(report), ""]
    return lines


def write_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace the ``name`` section of ``path`` between its markers (appended when it is
    not there yet); every other part of the file is kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    while lines and not lines[-1]:
        lines = lines[:-1]
    section = "\n".join([start, *lines, end])
    text = path.read_text() if path.exists() else "\n".join(TITLE) + "\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    suites = load_suites()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        allow_abbrev=False,
        description="Run a benchmark suite; arguments it does not know go to the suite's steps.",
    )
    parser.add_argument("suite", nargs="?", choices=list(suites), help="the suite to run")
    parser.add_argument("--only", nargs="+", default=None, metavar="STEP", help="these steps")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md only")
    parser.add_argument("--list", action="store_true", help="print the suites and their steps")
    parser.add_argument("--results", default=str(RESULTS_DIR), help=argparse.SUPPRESS)
    parser.add_argument("--markdown", default=str(RESULTS_MD), help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    if args.list or not args.suite:
        for name, suite in suites.items():
            steps = ", ".join(
                s["name"] + ("" if s["default"] else " (with --only)") for s in suite["steps"]
            )
            print(f"{name:<11} {suite['about']}\n{'':<11} steps: {steps}; needs {suite['needs']}")
        return 0 if args.list else 2
    suite = suites[args.suite]
    steps = suite["steps"]
    names = [s["name"] for s in steps]
    if args.only and set(args.only) - set(names):
        parser.error(f"{args.suite} has the steps {', '.join(names)}")
    chosen = [s for s in steps if (s["name"] in args.only if args.only else s["default"])]
    results_dir = Path(args.results)
    reports = read_results(args.suite, steps, results_dir)
    if not args.report_only:
        for step in chosen:
            print(f"[{args.suite}] {step['name']}: {step['module']}", flush=True)
            reports[step["name"]] = run_step(step, extra)
            # Written after each step, so a later step's failure keeps the earlier figures.
            write_results(args.suite, steps, reports, results_dir)
    markdown = Path(args.markdown)
    write_section(markdown, args.suite, section_lines(args.suite, suite["about"], steps, reports))
    if not args.report_only:
        print(f"wrote {results_dir / f'{args.suite}.json'}")
    print(f"wrote section {args.suite} of {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
