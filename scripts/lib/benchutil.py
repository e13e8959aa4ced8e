#!/usr/bin/env python3
"""Small helpers for scripts/demo.sh and scripts/bench.sh (stdlib only).

Subcommands:
  free-ports N                 print N TCP ports on 127.0.0.1 that were free a moment ago
  wait-http PORT PATH PID SECS wait until GET PATH on 127.0.0.1:PORT gets any HTTP status
                               line, while process PID lives; exit 0 ready, 1 timeout, 2 PID died
  stats FILE WALL_S            print a gocacheprog-s3 --stats-file JSON as human lines
  stat FILE KEY                print one counter of a stats file (0 if absent)
  startup N BIN [ARGS...]      spawn BIN N times with stdin open, time until the first line on
                               stdout (the handshake), close stdin, time until exit;
                               prints "median_ms p90_ms exit_median_ms"
  peak-rss FILE                largest number (KiB) in a /usr/bin/time -f %M output file, in MiB
  proxy-ceiling FILE           one line from the JSON lines of `faultproxy selftest`: what the
                               proxy itself can carry (bytes/s as MB/s, requests/s, ...)
"""

import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by the shell) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def http_answers(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(2)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            for _ in range(16):  # bounded
                chunk = s.recv(64)
                if not chunk:
                    break
                head += chunk
                if len(head) >= 12:
                    break
            return head.startswith(b"HTTP/1.")
    except OSError:
        return False


def wait_http(port, path, pid, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if http_answers(port, path):
            return 0
        if not pid_alive(pid):
            return 2
        time.sleep(0.05)
    return 1


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def mb(n):
    return n / 1e6


def stats(path, wall):
    s = load(path)
    if not s:
        print(f"    (no stats file at {path})")
        return
    g = lambda k: int(s.get(k, 0))  # noqa: E731
    wall = max(float(wall), 1e-9)
    print(
        f"    gets {g('gets')}: local hits {g('local_hits')}, from bucket {g('remote_hits')}, "
        f"misses {g('misses')}" + (f", errors {g('get_errors')}" if g("get_errors") else "")
    )
    print(f"    puts {g('puts')}" + (f" (errors {g('put_errors')})" if g("put_errors") else ""))
    up = (
        f"    uploaded {g('uploads')} objects, {mb(g('bytes_uploaded')):.1f} MB "
        f"({mb(g('bytes_uploaded')) / wall:.1f} MB/s over the wall time)"
    )
    extra = [f"{k} {g(k)}" for k in ("upload_errors", "uploads_skipped") if g(k)]
    print(up + (f"; {', '.join(extra)}" if extra else ""))
    down = (
        f"    downloaded {g('remote_hits')} objects, {mb(g('bytes_downloaded')):.1f} MB "
        f"({mb(g('bytes_downloaded')) / wall:.1f} MB/s over the wall time)"
    )
    extra = [f"{k} {g(k)}" for k in ("remote_get_errors", "remote_bad_objects", "remote_disabled") if g(k)]
    print(down + (f"; {', '.join(extra)}" if extra else ""))


def stat(path, key):
    print(int(load(path).get(key, 0)))


def read_line(proc, deadline):
    """Bytes up to the first newline on proc.stdout, or None at EOF/deadline."""
    fd = proc.stdout.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buf += chunk
    return buf


def startup(n, argv):
    hand, done = [], []
    for i in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            line = read_line(p, time.monotonic() + 10)
            t1 = time.perf_counter()
            if line is None:
                sys.exit(f"startup: run {i}: no handshake line within 10 s")
            p.stdin.close()
            p.wait(timeout=10)
            t2 = time.perf_counter()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        hand.append((t1 - t0) * 1000)
        done.append((t2 - t1) * 1000)
    hand.sort()
    p90 = hand[min(len(hand) - 1, int(round(0.9 * (len(hand) - 1))))]
    print(f"{statistics.median(hand):.2f} {p90:.2f} {statistics.median(done):.2f}")


def peak_rss(path):
    best = 0
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.isdigit():
                    best = max(best, int(line))
    except OSError:
        pass
    print(f"{best / 1024:.1f}" if best else "n/a")


def proxy_ceiling(path):
    """The self-test's JSON object(s) as one line: what the proxy itself can carry."""
    parts = []
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        lines = []
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if not isinstance(d, dict):
            continue
        if {"bytes_per_sec", "requests_per_sec", "capped_bytes_per_sec"} <= d.keys():
            conns, size, small = d.get("connections", "?"), d.get("size", 0), d.get("small_size", 0)
            text = (
                f"uncapped {d['bytes_per_sec'] / 1e6:.0f} MB/s ({conns} connections, {size / 1024:.0f} KiB "
                f"responses) and {d['requests_per_sec']:.0f} requests/s ({small / 1024:.0f} KiB responses)"
            )
            if d.get("cap_bytes_per_sec"):
                text += (
                    f"; under a {d['cap_bytes_per_sec'] / 1e6:.0f} MB/s cap {d['capped_bytes_per_sec'] / 1e6:.1f} MB/s"
                )
            if d.get("delay_ms"):
                text += f"; at {d['delay_ms']} ms"
            text += f"; errors {d.get('errors', 0)}"
            parts.append(text)
        else:
            parts.append(", ".join(f"{k} {v}" for k, v in d.items()))
    print("; ".join(parts) if parts else "- (faultproxy selftest printed no JSON)")


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "free-ports":
        free_ports(int(a[1]))
    elif cmd == "wait-http":
        sys.exit(wait_http(int(a[1]), a[2], int(a[3]), float(a[4])))
    elif cmd == "stats":
        stats(a[1], a[2])
    elif cmd == "stat":
        stat(a[1], a[2])
    elif cmd == "startup":
        startup(int(a[1]), a[2:])
    elif cmd == "peak-rss":
        peak_rss(a[1])
    elif cmd == "proxy-ceiling":
        proxy_ceiling(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
