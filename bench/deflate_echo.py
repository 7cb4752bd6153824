#!/usr/bin/env python3
"""Echo with permessage-deflate on and off: round trips per second and server CPU per round trip,
through bench/servers/echo.php, with Python websockets clients (which offer permessage-deflate;
the server answers it only with websocket_compression on).

    .deps/venv/bin/python bench/deflate_echo.py build/surge.so [--secs 5] [--conns 20]

Prints one JSON line per (compression, message size). The Python clients are slower than the
server, so round trips/s is the clients' limit as much as the server's: compare the server's CPU
per round trip (user + system time of the PHP process, from /proc) between on and off.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from websockets.asyncio.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def message(size: int) -> str:
    """Chat-like JSON text of `size` bytes: compressible, as real messages are."""
    text, i = "", 0
    while len(text) < size:
        text += json.dumps({"event": "chat", "user": f"user{i % 37}", "text": f"message number {i} in the room"})
        i += 1
    return text[:size]


async def client(url: str, payload: str, until: float, counts: list) -> None:
    async with connect(url, max_size=None) as ws:
        while time.monotonic() < until:
            await ws.send(payload)
            assert await ws.recv() == payload
            counts[0] += 1


async def measure(url: str, pid: int, size: int, conns: int, secs: float) -> dict:
    payload = message(size)
    await asyncio.gather(*(client(url, payload, time.monotonic() + 0.5, [0]) for _ in range(conns)))  # warm-up
    counts = [0]
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(client(url, payload, t0 + secs, counts) for _ in range(conns)))
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    return {"size": size, "conns": conns, "round_trips_per_s": round(counts[0] / wall),
            "server_cpu_us_per_round_trip": round(cpu / counts[0] * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("so")
    parser.add_argument("--secs", type=float, default=5)
    parser.add_argument("--conns", type=int, default=20)
    parser.add_argument("--sizes", default="32,4096")
    args = parser.parse_args()
    for compression in (False, True):
        env = dict(os.environ, SURGE_PORT="0", SURGE_COMPRESSION="1" if compression else "0")
        server = subprocess.Popen(["php", "-d", f"extension={os.path.abspath(args.so)}", f"{ROOT}/bench/servers/echo.php"],
                                  env=env, stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline().split()[1])
            for size in map(int, args.sizes.split(",")):
                result = asyncio.run(measure(f"ws://127.0.0.1:{port}/", server.pid, size, args.conns, args.secs))
                print(json.dumps({"compression": compression, **result, "server_rss_kib": rss_kib(server.pid)}), flush=True)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
