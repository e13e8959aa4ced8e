#!/usr/bin/env python3
"""Replays go's puts of every output in a GOCACHE directory into a cache program, alone.

    python3 scripts/lib/replay_puts.py GOCACHE_DIR PROGRAM [ARGS...]

Every `<xx>/<outputID>-d` file becomes one put (action ID derived from its output ID),
written to the program's stdin as go writes them, then close. Wrap PROGRAM in
`/usr/bin/time -f '%U %S'` (or `perf record`) to see what the put path costs without go
competing for the CPU. Fill GOCACHE_DIR first with e.g. `GOCACHE=DIR go build std`.
"""
import base64
import glob
import hashlib
import os
import subprocess
import sys
import threading
import time


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, prog = sys.argv[1], sys.argv[2:]
    files = sorted(glob.glob(os.path.join(src, "??", "*-d")))
    lines = []
    for i, path in enumerate(files, start=1):
        with open(path, "rb") as f:
            body = f.read()
        out = hashlib.sha256(body).digest()
        action = hashlib.sha256(b"replay" + out).digest()
        b64 = lambda b: base64.b64encode(b).decode()
        line = '{"ID":%d,"Command":"put","ActionID":"%s","OutputID":"%s","BodySize":%d}\n' % (
            i, b64(action), b64(out), len(body))
        if body:
            line += '"' + b64(body) + '"\n'
        lines.append(line.encode())
    data = b"".join(lines) + b'{"ID":%d,"Command":"close"}\n' % (len(files) + 1)
    proc = subprocess.Popen(prog, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    answers = []
    reader = threading.Thread(target=lambda: answers.extend(proc.stdout))
    reader.start()
    start = time.time()
    proc.stdin.write(data)
    proc.stdin.close()
    reader.join(timeout=600)
    rc = proc.wait(timeout=60)
    errors = sum(1 for a in answers if b'"Err"' in a)
    print("%d puts (%.1f MB of protocol): %d answers, %d errors, exit %d, %.2f s" % (
        len(files), len(data) / 1e6, len(answers), errors, rc, time.time() - start), file=sys.stderr)
    sys.exit(1 if errors or rc or len(answers) != len(files) + 2 else 0)


if __name__ == "__main__":
    main()
