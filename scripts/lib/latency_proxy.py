#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a simulated network round trip (stdlib asyncio).

    latency_proxy.py --listen PORT --upstream PORT --delay-ms N [--parent-pid PID]

Model: after the client has sent something (a request, or part of one), the next
data flowing back from the server is held for N ms before it is forwarded. So
each HTTP request/response exchange on a connection costs about N ms more, and
the first exchange on a new connection costs 2N ms (the TCP handshake's round
trip that a real network would add). Throughput is not limited.

Bounded: it only listens on 127.0.0.1 and forwards to 127.0.0.1; a connection
idle for --idle-timeout seconds is closed; the proxy exits after --max-seconds,
when --parent-pid is gone, or on SIGTERM/SIGINT. Prints "ready PORT" on stdout
once it listens.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

CHUNK = 256 * 1024


def quick_ack(writer):
    """Asks the kernel to acknowledge what arrives at once. Some stores (Garage 2.5)
    leave Nagle's algorithm on: a response body written after its headers is then held
    until the headers are acknowledged, and a delayed ACK makes that ~40 ms. Without
    this, the proxy would pass that store artefact on as if it were network latency.
    Linux clears the flag as it goes, so it is set again before every read."""
    sock = writer.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass


async def pump(reader, writer, idle, on_data=None, before_write=None, before_read=None):
    try:
        while True:
            if before_read:
                before_read()
            data = await asyncio.wait_for(reader.read(CHUNK), idle)
            if not data:
                break
            if on_data:
                on_data()
            if before_write:
                await before_write()
            writer.write(data)
            await asyncio.wait_for(writer.drain(), idle)
        if writer.can_write_eof():
            writer.write_eof()  # half-close: pass the EOF on
        else:
            writer.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        writer.close()


async def handle(args, creader, cwriter):
    delay = args.delay_ms / 1000
    try:
        ureader, uwriter = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", args.upstream), 5)
    except (OSError, asyncio.TimeoutError):
        cwriter.close()
        return
    # The first answer on a connection also pays for the TCP handshake.
    state = {"pending": False, "extra": delay}

    def client_sent():
        state["pending"] = True

    async def before_answer():
        if state["pending"]:
            state["pending"] = False
            wait = delay + state["extra"]
            state["extra"] = 0
            if wait > 0:
                await asyncio.sleep(wait)

    try:
        await asyncio.gather(
            pump(creader, uwriter, args.idle_timeout, on_data=client_sent),
            pump(ureader, cwriter, args.idle_timeout, before_write=before_answer, before_read=lambda: quick_ack(uwriter)),
        )
    finally:
        for w in (uwriter, cwriter):
            w.close()


async def watch_parent(pid, stop):
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            return
        except PermissionError:
            pass
        try:
            await asyncio.wait_for(stop.wait(), 1)
        except asyncio.TimeoutError:
            pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--upstream", type=int, required=True, help="port of the server on 127.0.0.1")
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    ap.add_argument("--idle-timeout", type=float, default=300)
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = await asyncio.start_server(
        lambda r, w: handle(args, r, w), "127.0.0.1", args.listen, backlog=512, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    tasks = []
    if args.parent_pid:
        tasks.append(asyncio.create_task(watch_parent(args.parent_pid, stop)))
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except asyncio.TimeoutError:
        print("latency_proxy: --max-seconds reached, exiting", file=sys.stderr)
    # No wait_closed(): open connections are cancelled by asyncio.run on return.
    server.close()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
