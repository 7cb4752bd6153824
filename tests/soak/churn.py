"""Churn clients for the soak test: CONCURRENCY tasks, each connecting, sending a few messages
(waiting for their echoes), then leaving, over and over for DURATION seconds. Prints, every
SAMPLE seconds, the server's RSS (from /proc) and what the clients did, as a table."""

import asyncio
import random
import sys
import time

from websockets.asyncio.client import connect


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main(url: str, pid: int, duration: float, concurrency: int, sample: float) -> int:
    stats = {"connections": 0, "messages": 0, "errors": 0, "open": 0}
    end = time.monotonic() + duration

    async def client() -> None:
        while time.monotonic() < end:
            try:
                async with connect(url, open_timeout=10, max_queue=None) as ws:
                    stats["open"] += 1
                    try:
                        for i in range(random.randint(1, 20)):
                            text = f"m{i}-" + "x" * random.randint(0, 2000)
                            await ws.send(text)
                            while (await asyncio.wait_for(ws.recv(), 10)) != text:
                                pass  # broadcasts interleave with the echo
                            stats["messages"] += 1
                        await asyncio.sleep(random.random() * 0.5)
                    finally:
                        stats["open"] -= 1
                stats["connections"] += 1
            except Exception:
                stats["errors"] += 1
                await asyncio.sleep(0.1)

    async def sampler() -> list:
        rows = []
        start = time.monotonic()
        print(f"{'t (s)':>6} {'RSS (KiB)':>10} {'open':>6} {'connections':>12} {'messages':>10} {'errors':>7}", flush=True)
        while time.monotonic() < end:
            await asyncio.sleep(sample)
            row = (round(time.monotonic() - start), rss_kib(pid), stats["open"], stats["connections"], stats["messages"], stats["errors"])
            rows.append(row)
            print(f"{row[0]:>6} {row[1]:>10} {row[2]:>6} {row[3]:>12} {row[4]:>10} {row[5]:>7}", flush=True)
        return rows

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    rows = await sampler()
    await asyncio.gather(*tasks)
    first = [r[1] for r in rows if r[0] <= 60]
    last = [r[1] for r in rows if r[0] > rows[-1][0] - 60]
    if first and last:
        a, b = sum(first) / len(first), sum(last) / len(last)
        print(f"RSS first minute: {a:.0f} KiB (max {max(first)}), last minute: {b:.0f} KiB (max {max(last)}), "
              f"change {100 * (b - a) / a:+.1f}%; {stats['connections']} connections, {stats['messages']} messages, "
              f"{stats['errors']} errors; after the clients left: {rss_kib(pid)} KiB")
    return 0


if __name__ == "__main__":
    url, pid = sys.argv[1], int(sys.argv[2])
    duration, concurrency, sample = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    sys.exit(asyncio.run(main(url, pid, duration, concurrency, sample)))
