#!/usr/bin/env python3
"""Draws the benchmark's wall times as an SVG (stdlib only: no matplotlib, no network).

    benchchart.py SUMMARY.json OUT.svg

SUMMARY.json is what benchreport.py writes: {"title": ..., "workloads": [{"label": ...,
"rows": [{"label": ..., "group": "plain|local|bucket|proxy", "median": S, "runs": [S, ...]}]}]}.
One panel per workload, one horizontal bar per scenario (the median), a dot per
individual run, on a log scale (warm builds take a hundredth of a cold one), each
bar labelled with its value and its ratio to the plain cold build of that workload.
"""

import json
import math
import sys
from xml.sax.saxutils import escape

from benchreport import fmt_ratio

WIDTH = 980
LABEL_W = 250  # left column: scenario names
VALUE_W = 200  # right column: value labels
BAR_H = 16
ROW_H = 24
PANEL_GAP = 34
TOP = 64
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

# plain go in grey, the cache program in colours by where the outputs come from
COLOURS = {
    "plain": "#8c8c8c",
    "local": "#3b75af",
    "bucket": "#4f9d69",
    "proxy": "#d9822b",
    "noprefetch": "#b54a4a",
}
LEGEND = [
    ("plain", "plain GOCACHE (no cache program)"),
    ("local", "cache program, local tier only"),
    ("bucket", "bucket on loopback"),
    ("proxy", "bucket behind latency proxy"),
    ("noprefetch", "same, --no-prefetch"),
]


def fmt_s(v):
    if v >= 100:
        return f"{v:.0f} s"
    if v >= 10:
        return f"{v:.1f} s"
    return f"{v:.2f} s"


def log_ticks(lo, hi):
    """Decade ticks (and 2, 5 in between when the range is short) covering [lo, hi]."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1, 2, 5) if b - a <= 3 else (1,)
    ticks = []
    for e in range(a, b + 1):
        for m in steps:
            t = m * 10**e
            if lo <= t <= hi:
                ticks.append(t)
    return ticks


def tick_label(t):
    if t >= 1:
        return f"{t:g} s"
    return f"{t * 1000:g} ms"


def draw(summary):
    workloads = [w for w in summary.get("workloads", []) if w.get("rows")]
    values = [r["median"] for w in workloads for r in w["rows"] if r.get("median")]
    values += [x for w in workloads for r in w["rows"] for x in r.get("runs", []) if x]
    if not values:
        values = [1.0]
    lo = 10 ** math.floor(math.log10(max(min(values), 0.01)))
    top = max(values) * 1.05
    e = math.floor(math.log10(top))
    hi = next(m * 10**e for m in (1, 2, 5, 10) if m * 10**e >= top)
    if hi <= lo * 2:
        hi = lo * 10
    plot_x0, plot_x1 = LABEL_W, WIDTH - VALUE_W

    def x_of(v):
        v = min(max(v, lo), hi)
        return plot_x0 + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (plot_x1 - plot_x0)

    out = []
    y = TOP
    panels = []
    for w in workloads:
        h = 26 + len(w["rows"]) * ROW_H + 22
        panels.append((w, y, h))
        y += h + PANEL_GAP
    legend_y = y
    height = legend_y + 30 + 18 * ((len(LEGEND) + 2) // 3)

    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="12">'
    )
    out.append(f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>')
    out.append(
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f"{escape(summary.get('title', 'gocacheprog-s3 benchmark'))}</text>"
    )
    sub = summary.get("subtitle", "")
    if sub:
        out.append(f'<text x="{WIDTH / 2}" y="42" text-anchor="middle" fill="#555">{escape(sub)}</text>')

    ticks = log_ticks(lo, hi)
    for w, py, ph in panels:
        out.append(f'<text x="8" y="{py + 14}" font-size="14" font-weight="bold">{escape(w["label"])}</text>')
        gy0, gy1 = py + 22, py + 26 + len(w["rows"]) * ROW_H
        for t in ticks:
            tx = x_of(t)
            major = abs(math.log10(t) - round(math.log10(t))) < 1e-9
            out.append(
                f'<line x1="{tx:.1f}" y1="{gy0}" x2="{tx:.1f}" y2="{gy1}" '
                f'stroke="{"#c8c8c8" if major else "#ececec"}" stroke-width="1"/>'
            )
            out.append(
                f'<text x="{tx:.1f}" y="{gy1 + 14}" text-anchor="middle" font-size="10" fill="#666">'
                f"{tick_label(t)}</text>"
            )
        base = w.get("plain_cold")
        for i, r in enumerate(w["rows"]):
            ry = py + 26 + i * ROW_H
            colour = COLOURS.get(r.get("group", "plain"), "#888")
            out.append(
                f'<text x="{LABEL_W - 8}" y="{ry + BAR_H - 4}" text-anchor="end">{escape(r.get("short") or r["label"])}</text>'
            )
            med = r.get("median")
            if not med:
                out.append(f'<text x="{plot_x0 + 4}" y="{ry + BAR_H - 4}" fill="#999">not measured</text>')
                continue
            bx = x_of(med)
            out.append(
                f'<rect x="{plot_x0}" y="{ry}" width="{max(bx - plot_x0, 1):.1f}" height="{BAR_H}" '
                f'fill="{colour}"><title>{escape(r["label"])}: median {fmt_s(med)}</title></rect>'
            )
            runs = [x for x in r.get("runs", []) if x]
            if len(runs) > 1:
                for x in runs:
                    out.append(
                        f'<circle cx="{x_of(x):.1f}" cy="{ry + BAR_H / 2}" r="2.5" fill="#222" '
                        f'fill-opacity="0.55"/>'
                    )
            label = fmt_s(med)
            if base:
                label += f"  ({fmt_ratio(med / base)} plain cold)"
            lx = max([bx] + [x_of(x) + 3 for x in runs])
            out.append(f'<text x="{lx + 6:.1f}" y="{ry + BAR_H - 4}" fill="#222">{escape(label)}</text>')
        out.append(
            f'<line x1="{plot_x0}" y1="{gy0}" x2="{plot_x0}" y2="{gy1}" stroke="#444" stroke-width="1"/>'
        )

    out.append(
        f'<text x="8" y="{legend_y}" fill="#555">Bars: median wall time (log scale); dots: the individual '
        f"runs; in brackets: the ratio to plain go, cold, of the same workload.</text>"
    )
    for i, (group, text) in enumerate(LEGEND):
        lx = 8 + (i % 3) * 320
        ly = legend_y + 14 + (i // 3) * 18
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{COLOURS[group]}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly + 10}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        summary = json.load(f)
    svg = draw(summary)
    with open(sys.argv[2], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
