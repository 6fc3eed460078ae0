"""Server-rendered SVG charts: no chart library, no script, nothing fetched at run time,
and they obey the app's content security policy (no inline styles or scripts)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from markupsafe import Markup, escape

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
