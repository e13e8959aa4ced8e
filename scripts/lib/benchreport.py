#!/usr/bin/env python3
"""Turns the raw results of scripts/bench.sh into its markdown report (stdlib only).

    benchreport.py META.tsv RESULTS.jsonl OUT.md SUMMARY.json [CHART_REF]

META.tsv: "key<TAB>value" lines (machine, versions, sizes, start-up, proxy ceiling, the
command line, workload labels as workload.<key>.label, ...).
RESULTS.jsonl: one JSON object per timed run: {"workload", "scenario", "label", "group",
"rep", "wall", "dir", "cmds"}. DIR holds the run's stats-*.json (one per cache-program
session: `--stats-file`) and time.txt (one "%M %U %S" line per session from /usr/bin/time).
Per run the counters and the CPU time are summed over its sessions and the peak RSS is
the largest; per row the wall time and the counters are the median over the repetitions
and the peak RSS the largest. Fields a stats file does not have are shown as "-".

Writes the report to OUT.md (and stdout is left to the caller), and SUMMARY.json for
benchchart.py. CHART_REF is the SVG's path as the report should link it.
"""

import json
import os
import statistics
import sys

COUNTERS = [
    "gets",
    "local_hits",
    "remote_hits",
    "misses",
    "get_errors",
    "uploads",
    "bytes_uploaded",
    "bytes_downloaded",
    "uploads_skipped",
    "upload_errors",
    "remote_get_errors",
    "remote_disabled",
]
PREFETCH = [
    "prefetched",
    "prefetch_hits",
    "prefetch_wasted_bytes",
    "manifest_entries",
    "fast_misses",
    "fast_misses_present",
]

# (target label, scenario, baseline scenario, limit) on the std workload; None baseline: RSS.
TARGETS = [
    ("warm bucket, empty local tier, {l1} ms + {bw}, {std}", "d{l1}_warm", "plain_cold", 0.10),
    ("same at {l2} ms", "d{l2}_warm", "plain_cold", 0.15),
    ("cold (empty bucket) at {l1} ms, {std}", "d{l1}_cold", "plain_cold", 1.10),
    ("warm local tier, {std}", "local_warm", "plain_warm", 1.05),
    ("warm bucket on loopback, {std}", "lo_warm", "plain_cold", 0.03),
]
RSS_LIMIT_MIB = 32


def downloaded(c):
    """Objects downloaded: by prefetch, plus the bucket hits that did not come through it."""
    parts = [c("prefetched"), c("remote_hits"), c("prefetch_hits")]
    if any(p is None for p in parts):
        return c("remote_hits")
    return parts[0] + parts[1] - parts[2]


def load_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                meta[k] = v
    return meta


def load_json(path):
    try:
        with open(path) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def read_time(path):
    """[(rss_kib, user_s, sys_s)] from a /usr/bin/time -f '%M %U %S' file (-a: one line a session)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 3:
                    continue  # e.g. "Command exited with non-zero status 1"
                try:
                    out.append((int(p[0]), float(p[1]), float(p[2])))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def run_figures(run):
    """Counters summed over the run's sessions, CPU (user+sys) summed, RSS max."""
    d = run["dir"]
    sessions = []
    try:
        names = sorted(n for n in os.listdir(d) if n.startswith("stats-") and n.endswith(".json"))
    except OSError:
        names = []
    for n in names:
        s = load_json(os.path.join(d, n))
        if s is not None:
            sessions.append(s)
    fig = {"sessions": len(sessions)}
    for k in COUNTERS + PREFETCH:
        vals = [s[k] for s in sessions if isinstance(s.get(k), (int, float))]
        fig[k] = sum(vals) if vals else None
    t = read_time(os.path.join(d, "time.txt"))
    fig["time_sessions"] = len(t)
    fig["cpu"] = sum(u + s for _, u, s in t) if t else None
    fig["rss_kib"] = max(m for m, _, _ in t) if t else None
    return fig


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt_num(v):
    if v is None:
        return "-"
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.1f}"


def fmt_mb(v):
    return "-" if v is None else f"{v / 1e6:.1f}"


def fmt_s(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.1f}"
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 10:
        return f"{r:.1f}×"
    if r >= 0.1:
        return f"{r:.2f}×"
    return f"{r:.3f}×"


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    meta = load_meta(sys.argv[1])
    out_md, out_summary = sys.argv[3], sys.argv[4]
    chart_ref = sys.argv[5] if len(sys.argv) == 6 else ""
    runs = []
    with open(sys.argv[2]) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))

    # workload -> scenario -> {label, group, runs: [(rep, wall, figures)]}, in first-seen order
    table = {}
    for r in runs:
        w = table.setdefault(r["workload"], {})
        row = w.setdefault(
            r["scenario"],
            {"label": r["label"], "short": r.get("short", ""), "group": r["group"], "runs": [], "cmds": r["cmds"]},
        )
        row["runs"].append((r["rep"], r["wall"], run_figures(r) if r["group"] != "plain" else None))

    def row_median(wl, sc):
        row = table.get(wl, {}).get(sc)
        return med([wall for _, wall, _ in row["runs"]]) if row else None

    notes = []
    lines = []
    say = lines.append
    say("# gocacheprog-s3 benchmark")
    say("")
    say(
        f"Figures, not pass/fail. Produced by `{meta.get('command', 'scripts/bench.sh')}` on "
        f"{meta.get('date', '?')}."
    )
    say("")
    say("| | |")
    say("| --- | --- |")
    say(f"| machine | {meta.get('machine', '?')} |")
    say(f"| go | {meta.get('go', '?')} |")
    say(f"| gocacheprog-s3 | {meta.get('commit', '?')}: {meta.get('binary', '?')} |")
    say(f"| store | Garage {meta.get('garage', '?')} on 127.0.0.1, one bucket, a fresh key prefix per cold run |")
    say(f"| proxy | {meta.get('proxy', '?')} |")
    say(f"| proxy ceiling | {meta.get('proxy_ceiling', '-')} |")
    say(f"| repetitions | {meta.get('reps', '?')}, interleaved (repetition r runs every scenario once, in order, before r+1); medians shown |")
    loads = [float(r["load"]) for r in runs if isinstance(r.get("load"), (int, float))]
    if loads:
        say(
            f"| machine load | 1-min load average before each run: min {min(loads):.1f}, median "
            f"{statistics.median(loads):.1f}, max {max(loads):.1f} |"
        )
        ncpu = int(meta.get("nproc", "0") or 0)
        if ncpu and max(loads) > ncpu + 2:
            notes.append(
                f"The load average reached {max(loads):.1f} on {ncpu} cores before some runs. A 1-minute "
                "average taken right after a cold build counts that build's own compiles (go keeps 10+ "
                "processes runnable), so a high figure alone does not mean other work ran; the spread of "
                "each row's runs (\"runs s\") says how noisy it is."
            )
    if meta.get("runs_seconds"):
        say(f"| duration | {float(meta['runs_seconds']) / 60:.1f} min for the timed runs |")
    say(f"| start-up to the handshake | {meta.get('startup', '-')} |")
    say(f"| binary size | {meta.get('size', '-')} |")
    say("")
    if chart_ref:
        say(f"![wall time per scenario, plain go against the cache program]({chart_ref})")
        say("")

    # ---- targets ----
    wl_keys = list(table)
    std = meta.get("target_workload", wl_keys[0] if wl_keys else "")
    std_label = meta.get(f"workload.{std}.label", std)
    lats = meta.get("latencies", "").split()
    l1 = lats[0] if lats else "20"
    l2 = lats[1] if len(lats) > 1 else "50"
    bw = meta.get("bandwidth_label", "100 MB/s")
    say("## Targets")
    say("")
    if meta.get("quick") == "1":
        say(f"Quick run: the targets are stated for `go build std`; here they are checked on `{std_label}`.")
        say("")
    say("| target | goal | measured | |")
    say("| --- | ---: | ---: | --- |")
    for label, sc, base, limit in TARGETS:
        sc = sc.format(l1=l1, l2=l2)
        text = label.format(l1=l1, l2=l2, bw=bw, std=f"`{std_label}`")
        r = ratio(row_median(std, sc), row_median(std, base))
        goal = f"≤ {limit:.2f}× plain {'warm' if base == 'plain_warm' else 'cold'}"
        if r is None:
            say(f"| {text} | {goal} | not measured | - |")
        else:
            say(f"| {text} | {goal} | {fmt_ratio(r)} | {'met' if r <= limit + 1e-12 else '**missed**'} |")
    peak, where = None, ""
    for wl, rows in table.items():
        for sc, row in rows.items():
            for _, _, fig in row["runs"]:
                if fig and fig["rss_kib"] is not None and (peak is None or fig["rss_kib"] > peak):
                    peak, where = fig["rss_kib"], f"{meta.get(f'workload.{wl}.short', wl)}: {row['label']}"
    if peak is None:
        say(f"| peak RSS, any scenario | ≤ {RSS_LIMIT_MIB} MiB | not measured | - |")
    else:
        mib = peak / 1024
        say(
            f"| peak RSS, any scenario | ≤ {RSS_LIMIT_MIB} MiB | {mib:.1f} MiB ({where}) | "
            f"{'met' if mib <= RSS_LIMIT_MIB else '**missed**'} |"
        )
    say("")

    # ---- per workload ----
    summary = {
        "title": "gocacheprog-s3: wall time per scenario",
        "subtitle": f"{meta.get('machine_short', '')}, {meta.get('go_short', '')}, "
        f"{meta.get('commit', '')}, {meta.get('date', '')}".strip(", "),
        "workloads": [],
    }
    for wl, rows in table.items():
        wl_label = meta.get(f"workload.{wl}.label", wl)
        pc, pw = row_median(wl, "plain_cold"), row_median(wl, "plain_warm")
        say(f"## `{wl_label}`")
        say("")
        desc = meta.get(f"workload.{wl}.desc")
        if desc:
            say(desc)
            say("")
        say(
            "| scenario | wall s (median) | runs s | × plain cold | × plain warm | gets | local hits | "
            "bucket hits | misses | up: objects / MB | down: objects / MB | CPU s | peak RSS MiB |"
        )
        say("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        chart_rows = []
        prefetch_rows = []
        for sc, row in rows.items():
            walls = [wall for _, wall, _ in sorted(row["runs"], key=lambda x: x[0])]
            m = med(walls)
            figs = [fig for _, _, fig in row["runs"] if fig]
            chart_rows.append(
                {"label": row["label"], "short": row["short"], "group": row["group"], "median": m, "runs": walls}
            )
            cells = [
                row["label"],
                f"**{fmt_s(m)}**",
                " ".join(fmt_s(w) for w in walls),
                fmt_ratio(ratio(m, pc)),
                fmt_ratio(ratio(m, pw)),
            ]
            if not figs:
                cells += [""] * 8
            else:

                def c(k):
                    return med([f[k] for f in figs])

                rss = [f["rss_kib"] for f in figs if f["rss_kib"] is not None]
                cells += [
                    fmt_num(c("gets")),
                    fmt_num(c("local_hits")),
                    fmt_num(c("remote_hits")),
                    fmt_num(c("misses")),
                    f"{fmt_num(c('uploads'))} / {fmt_mb(c('bytes_uploaded'))}",
                    f"{fmt_num(downloaded(c))} / {fmt_mb(c('bytes_downloaded'))}",
                    "-" if c("cpu") is None else f"{c('cpu'):.2f}",
                    f"{max(rss) / 1024:.1f}" if rss else "-",
                ]
                prefetch_rows.append(
                    [row["label"]]
                    + [fmt_mb(c(k)) if k.endswith("_bytes") else fmt_num(c(k)) for k in PREFETCH]
                )
                for rep, _, f in row["runs"]:
                    if f is None:
                        continue
                    if f["sessions"] != row["cmds"]:
                        notes.append(
                            f"`{wl_label}`, {row['label']}, repetition {rep}: {f['sessions']} stats file(s) for "
                            f"{row['cmds']} go command(s)"
                        )
                    trouble = [
                        f"{k} {fmt_num(f[k])}"
                        for k in ("get_errors", "upload_errors", "uploads_skipped", "remote_get_errors", "remote_disabled")
                        if f.get(k)
                    ]
                    if trouble:
                        notes.append(f"`{wl_label}`, {row['label']}, repetition {rep}: {', '.join(trouble)}")
            say("| " + " | ".join(cells) + " |")
        say("")
        if prefetch_rows:
            say("Prefetch (from the stats files; \"-\": the binary does not report it):")
            say("")
            say(
                "| scenario | prefetched | prefetch hits | prefetch wasted MB | manifest entries | "
                "fast misses | fast misses present |"
            )
            say("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for pr in prefetch_rows:
                say("| " + " | ".join(pr) + " |")
            say("")
        summary["workloads"].append(
            {"label": meta.get(f"workload.{wl}.short", wl_label), "plain_cold": pc, "rows": chart_rows}
        )

    say("## How it was measured")
    say("")
    for k in sorted(k for k in meta if k.startswith("how.")):
        say(f"- {meta[k]}")
    for k in sorted(k for k in meta if k.startswith("note.")):
        notes.append(meta[k])
    if notes:
        say("")
        say("## Notes from this run")
        say("")
        for n in notes:
            say(f"- {n}")
    say("")

    # scripts/bench-stream.sh's section of the same file stays (imported here: streamreport
    # imports this module).
    from streamreport import read_section

    kept = read_section(out_md)
    if kept:
        lines += [kept, ""]
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    with open(out_summary, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
