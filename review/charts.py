"""Server-rendered SVG charts: no chart library, no script, nothing fetched at run time,
and they obey the app's content security policy (no inline styles or scripts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from markupsafe import Markup, escape

from review.formatting import amount

_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, body: str, label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def reason_bars(reasons: Sequence[dict], *, width: int = 520) -> Markup:
    """Per-feature contributions to the score as horizontal bars, largest first."""
    rows = [r for r in reasons if (r.get("contribution") or 0) > 0]
    if not rows:
        return Markup('<p class="muted">No per-feature contributions recorded.</p>')
    rows = sorted(rows, key=lambda r: -float(r["contribution"]))
    label_w, bar_h, gap = 190, 18, 8
    top = max(float(r["contribution"]) for r in rows)
    usable = width - label_w - 70
    parts = []
    for i, r in enumerate(rows):
        y = i * (bar_h + gap)
        w = max(2.0, usable * float(r["contribution"]) / top)
        share = r.get("share")
        value = f"{share:.0%}" if isinstance(share, int | float) else f"{r['contribution']:.3g}"
        name = str(r.get("feature", "?"))
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" {_FONT} fill="#222">'
            f"{escape(short)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#c0392b" rx="2">'
            f"<title>{escape(name)}: {float(r['contribution']):.4g}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}" {_FONT} fill="#444">{value}</text>'
        )
    height = len(rows) * (bar_h + gap)
    return _svg(width, height, "".join(parts), "Contributions to the anomaly score")


def score_gauge(score: float, threshold: float | None, *, width: int = 520) -> Markup:
    """The score on a bar, with the threshold marked: how far over the line it is."""
    if threshold is None or not math.isfinite(score):
        return Markup("")
    top = max(score, threshold) * 1.15 or 1.0
    scale = (width - 20) / top
    x_t, x_s = 10 + threshold * scale, 10 + score * scale
    colour = "#c0392b" if score >= threshold else "#2e86c1"
    body = (
        f'<rect x="10" y="14" width="{width - 20}" height="14" fill="#eee" rx="3"/>'
        f'<rect x="10" y="14" width="{max(1.0, x_s - 10):.1f}" height="14" fill="{colour}" rx="3"/>'
        f'<line x1="{x_t:.1f}" x2="{x_t:.1f}" y1="6" y2="36" stroke="#111" stroke-width="2"/>'
        f'<text x="{max(x_t, 10):.1f}" y="50" text-anchor="{"start" if x_t < 80 else "middle"}" '
        f"{_FONT}>threshold {threshold:.4g}</text>"
        f'<text x="{min(x_s, width - 60):.1f}" y="10" {_FONT} fill="{colour}">'
        f"score {score:.4g}</text>"
    )
    return _svg(width, 56, body, f"score {score:.4g} against threshold {threshold:.4g}")


def score_histogram(
    scores: Sequence[float], threshold: float, *, width: int = 640, height: int = 220
) -> Markup:
    """Histogram of a run's scores (log count axis: the flagged tail stays visible) with the
    threshold line; bars over the threshold are red."""
    values = np.asarray([s for s in scores if s is not None and math.isfinite(s)], dtype=float)
    if not len(values):
        return Markup('<p class="muted">No scores stored for this run.</p>')
    lo = float(values.min())
    hi = max(float(values.max()), threshold * 1.05, lo + 1e-9)
    # Anomaly scores have long tails: a log axis keeps both the bulk and the tail readable.
    log_axis = lo > 0 and hi / lo > 20
    to_axis = np.log10 if log_axis else (lambda v: v)
    a_lo, a_hi = float(to_axis(lo)), float(to_axis(hi))
    counts, edges = np.histogram(to_axis(values), bins=40, range=(a_lo, a_hi))
    if log_axis:
        edges = 10**edges
    left, bottom, plot_w, plot_h = 40, height - 28, width - 50, height - 40
    peak = math.log10(counts.max() + 1)
    parts = [f'<line x1="{left}" x2="{left + plot_w}" y1="{bottom}" y2="{bottom}" stroke="#888"/>']
    bar_w = plot_w / len(counts)
    for i, c in enumerate(counts):
        if not c:
            continue
        h = plot_h * math.log10(c + 1) / peak
        x = left + i * bar_w
        colour = "#c0392b" if edges[i + 1] > threshold else "#5d6d7e"
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{edges[i]:.3g}–{edges[i + 1]:.3g}: '
            f"{int(c)} records</title></rect>"
        )
    x_t = left + plot_w * (float(to_axis(threshold)) - a_lo) / (a_hi - a_lo)
    parts.append(
        f'<line x1="{x_t:.1f}" x2="{x_t:.1f}" y1="8" y2="{bottom}" stroke="#111" '
        f'stroke-width="2" stroke-dasharray="4 3"/>'
        f'<text x="{x_t + 4:.1f}" y="18" {_FONT}>threshold {threshold:.4g}</text>'
        f'<text x="{left}" y="{height - 8}" {_FONT} fill="#444">{lo:.3g}</text>'
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" {_FONT} '
        f'fill="#444">score{" (log axis)" if log_axis else ""}</text>'
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" {_FONT} fill="#444">'
        f"{hi:.3g}</text>"
        f'<text x="4" y="14" {_FONT} fill="#444">log n</text>'
    )
    label = f"Score histogram of {len(values)} records; threshold {threshold:.4g}"
    return _svg(width, height, "".join(parts), label)


def flag_rate_bars(
    runs: Sequence[dict], current_id: str, *, width: int = 640, height: int = 160
) -> Markup:
    """Flag rate of the model's recent runs, oldest left, this run highlighted."""
    runs = [r for r in runs if r["rows_scored"]]
    if not runs:
        return Markup('<p class="muted">No earlier runs of this model.</p>')
    rates = [r["rows_flagged"] / r["rows_scored"] for r in runs]
    top = max(rates) * 1.2 or 0.01
    left, bottom, plot_h = 40, height - 24, height - 40
    bar_w = min(40.0, (width - left - 10) / len(runs))
    parts = [f'<line x1="{left}" x2="{width - 10}" y1="{bottom}" y2="{bottom}" stroke="#888"/>']
    for i, (run, rate) in enumerate(zip(runs, rates, strict=True)):
        h = plot_h * rate / top
        x = left + i * bar_w
        colour = "#c0392b" if run["id"] == current_id else "#85929e"
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{bar_w - 3:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{escape(run["batch_id"])}: {rate:.2%} '
            f"({run['rows_flagged']} of {run['rows_scored']})</title></rect>"
        )
    parts.append(f'<text x="4" y="14" {_FONT} fill="#444">{top:.1%}</text>')
    return _svg(width, height, "".join(parts), "Flag rate of this model's runs")


_VERDICT_COLOURS = {"fraud": "#922b21", "not_fraud": "#1e8449", "unsure": "#b9770e"}


def _free_label_y(
    x: float,
    y: float,
    width: float,
    placed: list[tuple[float, float, float]],
    top: float,
    bottom: float,
) -> float:
    """A baseline for a label centred on ``x`` near its dot at ``y`` that overlaps no label
    placed before it (``placed`` holds (left, right, baseline) and grows): nearby verdicts
    stack above or below their dots instead of printing over each other."""
    left, right = x - width / 2 - 3, x + width / 2 + 3
    candidates = [y - 14 - 12 * k for k in range(5)] + [y + 20 + 12 * k for k in range(5)]
    inside = [c for c in candidates if top + 10 <= c <= bottom - 2] or [y - 14]

    def clashes(baseline: float) -> bool:
        return any(
            left < r and l < right and abs(baseline - b) < 12
            for l, r, b in placed  # noqa: E741
        )

    chosen = next((c for c in inside if not clashes(c)), inside[0])
    placed.append((left, right, chosen))
    return chosen


def entity_timeline(story, *, width: int = 960, height: int = 240) -> Markup:
    """An entity's recent records over time (a ``review.story.Story``): the amount (or the
    score) of each record as a dot, flagged ones large and red, the analyst's verdict
    written over its dot and in its colour, this case's records ringed. Other cases'
    flags link to their case; every dot names its record, time and value on hover."""
    points = [p for p in story.points if p.value is not None]
    if not points:
        return Markup('<p class="muted">No amounts or scores to draw for these records.</p>')
    values = [p.value for p in points]
    lo, hi = min(values), max(values)

    def fmt(value: float) -> str:
        return amount(value) if story.value_column else f"{value:.4g}"

    left = 16 + 7 * max(len(fmt(lo)), len(fmt(hi)), len(story.value_label) // 2, 6)
    right, top, bottom = 40, 34, height - 34
    plot_w, plot_h = width - left - right, bottom - top
    log_axis = lo > 0 and hi / lo > 30
    to_axis = math.log10 if log_axis else (lambda v: v)
    a_lo, a_hi = to_axis(lo), to_axis(hi)
    if a_hi - a_lo < 1e-12:
        a_lo, a_hi = a_lo - 1, a_hi + 1
    pad = (a_hi - a_lo) * 0.08
    a_lo, a_hi = a_lo - pad, a_hi + pad

    def y_of(value: float) -> float:
        return bottom - plot_h * (to_axis(value) - a_lo) / (a_hi - a_lo)

    timed = all(p.at is not None for p in points)
    if timed:
        t0, t1 = points[0].at.timestamp(), points[-1].at.timestamp()
        span = max(t1 - t0, 1.0)
        xs = [left + 8 + (plot_w - 16) * (p.at.timestamp() - t0) / span for p in points]
        if t1 == t0:  # one moment: in the middle, not against the axis
            xs = [left + plot_w / 2] * len(points)
    else:
        step = (plot_w - 16) / max(len(points) - 1, 1)
        xs = [left + 8 + i * step for i in range(len(points))]
        if len(points) == 1:
            xs = [left + plot_w / 2]

    parts = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfc" '
        f'stroke="#d5d8dc"/>'
    ]
    ticks = [lo, hi] if hi > lo else [lo]
    if hi > lo:
        ticks.insert(
            1, 10 ** ((math.log10(lo) + math.log10(hi)) / 2) if log_axis else (lo + hi) / 2
        )
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8e8"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT} fill="#444">'
            f"{escape(fmt(tick))}</text>"
        )
    if timed:
        long_span = span > 2 * 86400
        fmt_time = "%Y-%m-%d" if long_span else "%m-%d %H:%M"
        marks = [(xs[0], points[0].at, "start"), (xs[-1], points[-1].at, "end")]
        if len(points) > 2 and xs[-1] - xs[0] > 260:
            middle = datetime.fromtimestamp(t0 + span / 2, UTC)
            marks.insert(1, ((xs[0] + xs[-1]) / 2, middle, "middle"))
        if t1 == t0:
            marks = [(xs[0], points[0].at, "middle")]
        for x, at, anchor in marks:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 16}" text-anchor="{anchor}" {_FONT} '
                f'fill="#444">{at.strftime(fmt_time)}</text>'
            )
        axis = f"time (UTC){', log scale' if log_axis else ''}"
    else:
        axis = f"records in the order kept{', log scale' if log_axis else ''}"
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" text-anchor="middle" {_FONT} '
        f'fill="#717d7e">{escape(axis)}</text>'
        f'<text x="4" y="{top - 6}" {_FONT} fill="#444" '
        f'font-weight="600">{escape(story.value_label)}</text>'
    )
    if len(points) > 1:
        line = " ".join(f"{x:.1f},{y_of(p.value):.1f}" for x, p in zip(xs, points, strict=True))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#aab7b8" stroke-width="1"/>')
    placed: list[tuple[float, float, float]] = []
    for x, p in zip(xs, points, strict=True):
        y = y_of(p.value)
        colour = _VERDICT_COLOURS.get(p.verdict or "", "#c0392b" if p.flagged else "#5d6d7e")
        radius = 6.5 if p.flagged else 3.5
        verdict = (p.verdict or "").replace("_", " ")
        when = p.at.strftime("%Y-%m-%d %H:%M UTC") if p.at else "time unknown"
        tip = (
            f"{p.record_id} · {when} · {story.value_label} {fmt(p.value)}"
            + (f" · score {p.score:.4g}" if p.score is not None and story.value_column else "")
            + (" · flagged" if p.flagged else "")
            + (f" · verdict {verdict}" if verdict else "")
            + (" · this case" if p.in_case else "")
        )
        mark = ""
        if p.in_case:
            mark += (
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius + 4}" fill="none" '
                f'stroke="#17202a" stroke-width="2"/>'
            )
        mark += (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" stroke="#fff" '
            f'stroke-width="1"><title>{escape(tip)}</title></circle>'
        )
        if verdict:
            label_x = min(max(x, left + 24), left + plot_w - 24)
            label_y = _free_label_y(label_x, y, 7 * len(verdict), placed, top, bottom)
            mark += (
                f'<text x="{label_x:.1f}" y="{label_y:.1f}" '
                f'text-anchor="middle" {_FONT} '
                f'font-weight="700" fill="{colour}">{escape(verdict)}</text>'
            )
        if p.case_id and p.flagged and not p.in_case:
            mark = f'<a href="/cases/{int(p.case_id)}">{mark}</a>'
        parts.append(mark)
    legend = [
        ("#5d6d7e", 3.5, "record"),
        ("#c0392b", 6.5, "flagged"),
        ("#922b21", 6.5, "fraud"),
        ("#1e8449", 6.5, "not fraud"),
    ]
    x = left
    for colour, radius, text in legend:
        parts.append(
            f'<circle cx="{x + 6}" cy="12" r="{radius}" fill="{colour}"/>'
            f'<text x="{x + 16}" y="16" {_FONT} fill="#444">{text}</text>'
        )
        x += 26 + 7 * len(text)
    parts.append(
        f'<circle cx="{x + 6}" cy="12" r="8" fill="none" stroke="#17202a" stroke-width="2"/>'
        f'<text x="{x + 20}" y="16" {_FONT} fill="#444">this case</text>'
    )
    flagged = sum(p.flagged for p in points)
    label = f"{story.value_label} of {len(points)} recent records over time; {flagged} flagged"
    return _svg(width, height, "".join(parts), label)
