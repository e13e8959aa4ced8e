#!/usr/bin/env python3
"""The report of scripts/bench-stream.sh (stdlib only): a markdown section and an SVG chart.

    streamreport.py META.tsv RESULTS.jsonl OUT.md CHART.svg
    streamreport.py --section OUT.md       print the section OUT.md holds

RESULTS.jsonl: one JSON object per runner: {"n", "section": "stream|mixed", "net" (ms),
"column", "version", "job", "mode": "plain|local|bucket", "wall", "cmd_walls", "load",
"requests", "dir"}; DIR holds the runner's stats-*.json and time.txt (see benchreport.py).

The section goes between the markers below: OUT.md's other content (scripts/bench.sh's
report) stays, and benchreport.py keeps the section when it rewrites the file.
"""

import json
import os
import re
import statistics
import sys
from xml.sax.saxutils import escape

from benchreport import fmt_mb, fmt_num, load_json, load_meta, run_figures

BEGIN = "<!-- bench-stream: begin (scripts/bench-stream.sh writes this section; scripts/bench.sh keeps it) -->"
END = "<!-- bench-stream: end -->"

COLUMNS = [
    ("plain_cold", "plain go cold"),
    ("first", "first runner of the release"),
    ("nopf", "same, `--no-prefetch`"),
    ("second", "second runner, same release"),
    ("floor", "floor: plain go on the previous release's GOCACHE"),
]
RUNNERS = [
    ("seed", "fills the bucket (first release)"),
    ("seed_nopf", "fills the --no-prefetch prefix"),
    ("first", "first runner"),
    ("nopf", "first runner, --no-prefetch"),
    ("second", "second runner"),
    ("warm_tier", "second runner's tier again, with the bucket"),
    ("local_warm", "second runner's tier again, local only"),
]
JOB_LABEL = {
    "build": "`go build ./...` + `go test -run XXX ./...`",
    "race": "`go test -race -run XXX ./...`",
    "cover": "`go test -cover -run XXX ./...`",
    "tags": "`go build -tags {tags} ./...` + `go test -tags {tags} -run XXX ./...`",
}


def fs(v):
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.1f}")


def fx(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}×"


def sessions(run):
    """The runner's stats files in the order the sessions ended (one per go command)."""
    d = run["dir"]
    try:
        names = [n for n in os.listdir(d) if n.startswith("stats-") and n.endswith(".json")]
    except OSError:
        return []
    names.sort(key=lambda n: os.stat(os.path.join(d, n)).st_mtime)
    return [s for s in (load_json(os.path.join(d, n)) for n in names) if s is not None]


def ssum(ss, key):
    vals = [s[key] for s in ss if isinstance(s.get(key), (int, float))]
    return sum(vals) if vals else None


def downloaded_objects(f):
    parts = [f.get("prefetched"), f.get("remote_hits"), f.get("prefetch_hits")]
    if any(p is None for p in parts):
        return f.get("remote_hits")
    return parts[0] + parts[1] - parts[2]


def write_section(path, section):
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    block = BEGIN + "\n" + section.rstrip("\n") + "\n" + END + "\n"
    if BEGIN in old and END in old:
        a = old.index(BEGIN)
        b = old.index(END) + len(END)
        new = old[:a] + block.rstrip("\n") + old[b:]
    else:
        new = old.rstrip("\n") + ("\n\n" if old.strip() else "") + block
    with open(path, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")


def read_section(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def chart(meta, by, versions, nets, out):
    """Grouped bars: per latency a panel, per release a group, per column a bar (seconds)."""
    colours = {"plain_cold": "#8c8c8c", "first": "#d9822b", "nopf": "#b54a4a", "second": "#4f9d69", "floor": "#3b75af"}
    rel = versions[1:]
    width, left, top, panel_h, gap = 980, 60, 70, 220, 60
    waste_h = 110
    height = top + len(nets) * (panel_h + gap) + len(nets) * (waste_h + gap) + 40
    vals = [r["wall"] for (net, col, v), r in by.items() if col in colours and v in rel]
    vmax = max(vals) if vals else 1.0
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200) if vmax / s <= 8)
    ymax = step * (int(vmax / step) + 1)
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f"Commit stream: {escape(meta.get('module', ''))}, one fresh runner per release</text>",
        f'<text x="{width / 2}" y="42" text-anchor="middle" fill="#555">'
        f"{escape(meta.get('nproc', '?'))} cores, {escape(meta.get('commit', ''))}, {escape(meta.get('date', ''))}; "
        "go build ./... + go test -run XXX ./..., wall seconds</text>",
    ]
    for p, net in enumerate(nets):
        y0 = top + p * (panel_h + gap)
        plot_w = width - left - 20
        o.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">bucket at {net} ms + {meta.get("bandwidth", "?")} MB/s</text>')
        for k in range(0, int(ymax / step) + 1):
            yv = k * step
            yy = y0 + panel_h - yv / ymax * panel_h
            o.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
            o.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="10" fill="#666">{yv:g} s</text>')
        gw = plot_w / max(len(rel), 1)
        bw = gw * 0.8 / len(COLUMNS)
        for i, v in enumerate(rel):
            gx = left + i * gw + gw * 0.1
            for j, (col, label) in enumerate(COLUMNS):
                r = by.get((net, col, v)) or by.get((nets[0], col, v))
                if not r:
                    continue
                h = r["wall"] / ymax * panel_h
                x = gx + j * bw
                o.append(
                    f'<rect x="{x:.1f}" y="{y0 + panel_h - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                    f'fill="{colours[col]}"><title>{escape(v)}: {escape(label)} {r["wall"]:.2f} s</title></rect>'
                )
                o.append(
                    f'<text x="{x + bw / 2 - 1:.1f}" y="{y0 + panel_h - h - 3:.1f}" text-anchor="middle" '
                    f'font-size="9">{r["wall"]:.1f}</text>'
                )
            o.append(
                f'<text x="{gx + gw * 0.4:.1f}" y="{y0 + panel_h + 14}" text-anchor="middle">{escape(v)}</text>'
            )
        o.append(f'<line x1="{left}" y1="{y0 + panel_h}" x2="{left + plot_w}" y2="{y0 + panel_h}" stroke="#444"/>')
    # Prefetch bytes of the first runners: used and wasted (the waste should not grow).
    mb = [
        (r["fig"]["bytes_downloaded"] or 0) / 1e6
        for (net, col, v), r in by.items()
        if col == "first" and r.get("fig") and v in rel
    ]
    mmax = max(mb + [1.0])
    mstep = next(x for x in (1, 2, 5, 10, 20, 50, 100, 200, 500) if mmax / x <= 4)
    mtop = mstep * (int(mmax / mstep) + 1)
    for p, net in enumerate(nets):
        y0 = top + len(nets) * (panel_h + gap) + p * (waste_h + gap)
        plot_w = width - left - 20
        o.append(
            f'<text x="{left}" y="{y0 - 6}" font-weight="bold">first runner at {net} ms: MB downloaded '
            "(dark: prefetched and never used)</text>"
        )
        for k in range(0, int(mtop / mstep) + 1):
            yy = y0 + waste_h - k * mstep / mtop * waste_h
            o.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
            o.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="10" fill="#666">{k * mstep:g}</text>')
        gw = plot_w / max(len(rel), 1)
        for i, v in enumerate(rel):
            r = by.get((net, "first", v))
            if not r or not r.get("fig"):
                continue
            down = (r["fig"]["bytes_downloaded"] or 0) / 1e6
            waste = (r["fig"]["prefetch_wasted_bytes"] or 0) / 1e6
            x = left + i * gw + gw * 0.1
            bwid = gw * 0.35
            h = down / mtop * waste_h
            hw = min(waste, down) / mtop * waste_h
            o.append(f'<rect x="{x:.1f}" y="{y0 + waste_h - h:.1f}" width="{bwid:.1f}" height="{h:.1f}" fill="#e8b27a"/>')
            o.append(f'<rect x="{x:.1f}" y="{y0 + waste_h - h:.1f}" width="{bwid:.1f}" height="{hw:.1f}" fill="#8a4b12"/>')
            o.append(
                f'<text x="{x + bwid + 4:.1f}" y="{y0 + waste_h - h + 10:.1f}" font-size="10">{down:.1f} MB, '
                f"{waste:.1f} wasted</text>"
            )
            o.append(f'<text x="{x + bwid / 2:.1f}" y="{y0 + waste_h + 14}" text-anchor="middle">{escape(v)}</text>')
        o.append(f'<line x1="{left}" y1="{y0 + waste_h}" x2="{left + plot_w}" y2="{y0 + waste_h}" stroke="#444"/>')
    ly = height - 24
    for j, (col, label) in enumerate(COLUMNS):
        lx = 10 + j * 194
        o.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colours[col]}"/>')
        short = label.replace("`", "").replace("floor: plain go on the previous release's GOCACHE", "floor (incremental)")
        o.append(f'<text x="{lx + 16}" y="{ly + 10}">{escape(short)}</text>')
    o.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(o) + "\n")


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def trace_sessions(path):
    """Per session of a trace.log: start, listing, downloads (times from the start), end."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        t, _, rest = line.partition(" ")
        try:
            t = float(t)
        except ValueError:
            continue
        if rest.startswith("start "):
            out.append({"start": t, "end": t, "listed": None, "downloads": []})
            continue
        if not out:
            continue
        s = out[-1]
        s["end"] = max(s["end"], t)
        m = re.search(r"listed in ([0-9.]+)(ms|µs|s)\)", rest)
        if m:
            v = float(m.group(1))
            s["listed"] = v / 1000 if m.group(2) == "ms" else v / 1e6 if m.group(2) == "µs" else v
            s["listed_at"] = t - s["start"]
        if "downloaded " in rest and " in " in rest:
            s["downloads"].append(t - s["start"])
    return out


def profile_section(say, runs, bw):
    prof = [r for r in runs if r["section"] == "profile"]
    if not prof:
        return
    net = prof[0]["net"]
    reps = sorted({r["rep"] for r in prof if r["rep"]})
    say(f"### Profile: where a second runner's time goes ({prof[0]['version']}, bucket at {net} ms, {len(reps)} repetitions)")
    say("")
    say(
        "Medians (the individual runs in brackets). *second runner*: empty tier, the bucket holding the whole "
        "stream; *warm tier + bucket*: its tier again, nothing to transfer; *local only*: the same tier without "
        "the bucket; *plain warm*: plain go, warm GOCACHE. The job once as two go commands (build, then test) "
        "and once as `go test -run XXX ./...` alone."
    )
    say("")
    say(
        "| job | go commands | plain warm s | local only s | warm tier + bucket s | second runner s | "
        f"per command s (second runner) | bytes at {bw} MB/s s | hold s | close s | session s | CPU s |"
    )
    say("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    cols = ("plain_warm", "local_warm", "warm_tier", "second", "warm_nolist", "warm_nopf", "warm_bare")
    parts = []
    for job, label in (("build", "build + test"), ("test", "test only")):
        rows = {c: [r for r in prof if r["job"] == job and r["column"] == c] for c in cols}
        if not rows["second"]:
            continue
        if rows["warm_bare"]:
            parts.append((label, rows))

        def cell(c):
            ws = [r["wall"] for r in rows[c]]
            return f"{fs(med(ws))} ({' '.join(fs(w) for w in ws)})" if ws else "-"

        sec = rows["second"]
        ncmd = len(sec[0].get("cmd_walls", []))
        percmd = " / ".join(fs(med([r["cmd_walls"][i] for r in sec if len(r["cmd_walls"]) > i])) for i in range(ncmd))
        by = med([r["fig"]["bytes_downloaded"] for r in sec])
        hold = med([ssum(r["sess"], "bucket_hold_ms") for r in sec])
        close = med([ssum(r["sess"], "close_wait_ms") for r in sec])
        dur = med([ssum(r["sess"], "duration_ms") for r in sec])
        cpu = med([r["fig"]["cpu"] for r in sec])
        say(
            f"| {label} | {ncmd} | {cell('plain_warm')} | {cell('local_warm')} | {cell('warm_tier')} | "
            f"{cell('second')} | {percmd} | {fs(None if by is None else by / (float(bw) * 1e6))} | "
            f"{fs(None if hold is None else hold / 1000)} | {fs(None if close is None else close / 1000)} | "
            f"{fs(None if dur is None else dur / 1000)} | {fs(cpu)} |"
        )
    say("")
    if parts:
        say(
            "The warm tier's session with the bucket, its start-up work taken away one part at a time "
            "(`--fast-miss-max-keys 0`: no listing; `--no-prefetch`: no manifest read, prefetch or manifest write); "
            "wall s, median (runs), and the sessions' own duration summed:"
        )
        say("")
        say("| job | local only | bucket, all | no listing | no prefetch | neither |")
        say("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, rows in parts:

            def both(c):
                ws = [r["wall"] for r in rows[c]]
                ds = [ssum(r["sess"], "duration_ms") for r in rows[c]]
                d = med(ds)
                return (
                    f"{fs(med(ws))} ({' '.join(fs(w) for w in ws)}); session {fs(None if d is None else d / 1000)}"
                    if ws
                    else "-"
                )

            say(
                f"| {label} | {both('local_warm')} | {both('warm_tier')} | {both('warm_nolist')} | "
                f"{both('warm_nopf')} | {both('warm_bare')} |"
            )
        say("")
    for r in prof:
        if r["column"] != "trace":
            continue
        ts = trace_sessions(os.path.join(r["dir"], "trace.log"))
        ss = r["sess"]
        say(
            f"One traced second runner (`-v=3`, each stderr line stamped on arrival; {fs(r['wall'])} s, per command "
            f"{' / '.join(fs(x) for x in r.get('cmd_walls', []))} s). Times from the session's start:"
        )
        say("")
        say(
            "| session | gets | listing done s (took) | downloads | first download s | half downloaded s | "
            "last download s | session end s | hold s |"
        )
        say("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for i, t in enumerate(ts):
            st = ss[i] if i < len(ss) else {}
            d = t["downloads"]
            say(
                f"| {i + 1} | {st.get('gets', '-')} | "
                f"{fs(t.get('listed_at'))} ({fs(t['listed'])}) | {len(d)} | {fs(d[0] if d else None)} | "
                f"{fs(d[len(d) // 2] if d else None)} | {fs(d[-1] if d else None)} | {fs(t['end'] - t['start'])} | "
                f"{fs(st['bucket_hold_ms'] / 1000 if 'bucket_hold_ms' in st else None)} |"
            )
        say("")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--section":
        print(read_section(sys.argv[2]))
        return
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    meta = load_meta(sys.argv[1])
    out_md, out_svg = sys.argv[3], sys.argv[4]
    runs = []
    with open(sys.argv[2]) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    for r in runs:
        r["fig"] = run_figures(r) if r["mode"] != "plain" else None
        r["sess"] = sessions(r) if r["mode"] != "plain" else []
    versions = meta.get("versions", "").split()
    nets = meta.get("latencies", "").split()
    bw = meta.get("bandwidth", "100")
    by = {(r["net"], r["column"], r["version"]): r for r in runs if r["section"] == "stream"}
    net0 = nets[0] if nets else ""

    def get(net, col, v):
        return by.get((net, col, v)) or (by.get((net0, col, v)) if col in ("plain_cold", "floor", "plain_warm") else None)

    def wall(net, col, v):
        r = get(net, col, v)
        return r["wall"] if r else None

    L = []
    say = L.append
    say("## Commit stream: consecutive releases, each built by fresh runners")
    say("")
    say(
        f"Figures, not pass/fail. Produced by `{meta.get('command', 'scripts/bench-stream.sh')}` on "
        f"{meta.get('date', '?')}, one pass (the stream is sequential: each release's runners depend on the "
        "bucket the earlier ones left)."
    )
    say("")
    loads = [float(r["load"]) for r in runs if isinstance(r.get("load"), (int, float))]
    say("| | |")
    say("| --- | --- |")
    say(f"| machine | {meta.get('machine', '?')} |")
    if loads:
        say(
            f"| machine load | 1-min load average before each runner: min {min(loads):.1f}, median "
            f"{statistics.median(loads):.1f}, max {max(loads):.1f} (shared machine; a cold build's own compiles count too) |"
        )
    say(f"| go | {meta.get('go', '?')} |")
    say(f"| gocacheprog-s3 | {meta.get('commit', '?')} (release build) |")
    say(
        f"| store | Garage {meta.get('garage', '?')} on 127.0.0.1 behind faultproxy at "
        f"{', '.join(n + ' ms' for n in nets)} per round trip and {bw} MB/s |"
    )
    say(f"| module | `{meta.get('module', '?')}` {', '.join(versions)} (the first only fills the bucket) |")
    say(f"| job | {JOB_LABEL['build']} in the release's source, offline, one runner = a new empty GOCACHE / local tier |")
    if meta.get("runs_seconds"):
        say(f"| duration | {float(meta['runs_seconds']) / 60:.1f} min of runners |")
    say("")
    say(f"![wall time per release and runner]({os.path.basename(out_svg)})")
    say("")

    for net in nets:
        say(f"### Bucket at {net} ms + {bw} MB/s")
        say("")
        say(
            "| release | " + " | ".join(label for _, label in COLUMNS) + " | first ÷ floor | second ÷ plain cold |"
        )
        say("| --- |" + " ---: |" * (len(COLUMNS) + 2))
        for v in versions[1:]:
            cells = [v] + [fs(wall(net, col, v)) + " s" if wall(net, col, v) is not None else "-" for col, _ in COLUMNS]
            cells.append(fx(wall(net, "first", v), wall(net, "floor", v)))
            cells.append(fx(wall(net, "second", v), wall(net, "plain_cold", v)))
            say("| " + " | ".join(cells) + " |")
        say("")
        say("Per runner (the cache program's counters, summed over its sessions; requests through the proxy):")
        say("")
        say(
            "| release | runner | wall s | downloaded MB | objects down | prefetched | prefetch wasted MB | "
            "uploaded objects / MB | requests | CPU s | manifest entries |"
        )
        say("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for v in versions:
            for col, label in RUNNERS:
                r = by.get((net, col, v))
                if not r or not r["fig"]:
                    continue
                f = r["fig"]
                say(
                    f"| {v} | {label} | {fs(r['wall'])} | {fmt_mb(f['bytes_downloaded'])} | "
                    f"{fmt_num(downloaded_objects(f))} | {fmt_num(f['prefetched'])} | "
                    f"{fmt_mb(f['prefetch_wasted_bytes'])} | {fmt_num(f['uploads'])} / {fmt_mb(f['bytes_uploaded'])} | "
                    f"{r['requests'] if r['mode'] == 'bucket' else '-'} | "
                    f"{'-' if f['cpu'] is None else format(f['cpu'], '.2f')} | {fmt_num(f['manifest_entries'])} |"
                )
        say("")

    # ---- where the second runner's time goes ----
    say("### Where the second runner's time goes")
    say("")
    say(
        "The same job, same release, split by go command (build / test). *plain warm*: plain go on a warm "
        "GOCACHE (go's own work); *local only*: the cache program on the second runner's tier, now warm, without "
        "the bucket (the protocol); *warm tier + bucket*: the same tier with the bucket (adds the session's "
        "listing, manifest read and the end's manifest write, no transfer); *second runner*: empty tier "
        f"(adds the transfer: the bytes at {bw} MB/s shown apart). *hold*: time at least one get waited for "
        "the bucket; *close*: time the end of a session held go (manifest, uploads); *session*: the cache "
        "program's lifetime, summed."
    )
    say("")
    say(
        "| bucket | release | plain warm s | local only s | warm tier + bucket s | second runner s | "
        "per command (build / test) s | transfer at cap s | hold s | close s | session s | CPU s |"
    )
    say("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for net in nets:
        for v in versions[1:]:
            sec = by.get((net, "second", v))
            if not sec:
                continue
            ss = sec["sess"]
            hold, close, dur = ssum(ss, "bucket_hold_ms"), ssum(ss, "close_wait_ms"), ssum(ss, "duration_ms")
            f = sec["fig"]
            xfer = None if f["bytes_downloaded"] is None else f["bytes_downloaded"] / (float(bw) * 1e6)
            say(
                f"| {net} ms | {v} | {fs(wall(net, 'plain_warm', v))} | {fs(wall(net, 'local_warm', v))} | "
                f"{fs(wall(net, 'warm_tier', v))} | {fs(sec['wall'])} | "
                f"{' / '.join(fs(x) for x in sec.get('cmd_walls', []))} | {fs(xfer)} | "
                f"{fs(None if hold is None else hold / 1000)} | {fs(None if close is None else close / 1000)} | "
                f"{fs(None if dur is None else dur / 1000)} | {'-' if f['cpu'] is None else format(f['cpu'], '.2f')} |"
            )
    say("")

    # ---- mixed jobs ----
    mixed = [r for r in runs if r["section"] == "mixed"]
    if mixed:
        tags = meta.get("tags", "")
        say(f"### Mixed jobs on one release ({mixed[0]['version']}, bucket at {mixed[0]['net']} ms, CGO_ENABLED=1)")
        say("")
        say(
            "One fresh runner per job, in this order, on one bucket prefix that starts empty. The build key "
            "holds the build configuration (-race, -cover, -tags, ...), so each configuration has a manifest "
            "of its own, and within it each go command (build, test) its own working set: what one kind of "
            "job costs the next shows here."
        )
        say("")
        say(
            "| # | job | wall s | per command s | downloaded MB | objects down | prefetched | prefetch hits | "
            "prefetch wasted MB | misses | manifest entries | requests | CPU s |"
        )
        say("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in mixed:
            f = r["fig"]
            say(
                f"| {r['column']} | {JOB_LABEL[r['job']].format(tags=tags)} | {fs(r['wall'])} | "
                f"{' / '.join(fs(x) for x in r.get('cmd_walls', []))} | {fmt_mb(f['bytes_downloaded'])} | "
                f"{fmt_num(downloaded_objects(f))} | {fmt_num(f['prefetched'])} | {fmt_num(f['prefetch_hits'])} | "
                f"{fmt_mb(f['prefetch_wasted_bytes'])} | {fmt_num(f['misses'])} | {fmt_num(f['manifest_entries'])} | "
                f"{r['requests']} | {'-' if f['cpu'] is None else format(f['cpu'], '.2f')} |"
            )
        say("")

    profile_section(say, runs, bw)

    say("How it was measured: every runner starts on a new, empty GOCACHE / local tier; wall time from the")
    say("start of its first go command to the end of its last, `sync` before each; sources read once")
    say("beforehand. Counters from the cache program's `--stats-file` (one per session = per go command),")
    say("CPU from `/usr/bin/time` around it, requests from faultproxy's counters before and after the runner.")
    say("\"Objects down\" counts prefetched objects plus gets the bucket answered outside prefetch.")
    say("The `--no-prefetch` runners use a prefix of their own, filled by `--no-prefetch` runners of the")
    say("earlier releases, so that they find what a stream without prefetch would find.")
    if meta.get("quick") == "1":
        say("")
        say("Quick run (--quick): fewer releases, one latency; a check that the script works, not figures to quote.")
    write_section(out_md, "\n".join(L))
    chart(meta, by, versions, nets, out_svg)


if __name__ == "__main__":
    main()
