"""Idle miner streams for bench.miners: many StreamMiners over a few shared channels, heartbeating.

    python -m bench.miners.swarm --target HOST:PORT --keys FILE [--interval 5] [--per-channel 250]

FILE holds one "id=secret" per line (one stream each). Prints "ready <n> <seconds>" once every
stream has its welcome, then heartbeats each stream every `interval` s (+-10 % jitter, random
phase). On "s" from stdin prints a JSON snapshot (heartbeats sent, streams closed, worst
lateness since the last snapshot); on stdin EOF or SIGTERM prints final counters and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
import time
from pathlib import Path

import grpc

from coordinator.testing import StreamMiner, caps

CONNECT_BATCH = 200  # streams opened at once: a thundering herd only measures the herd


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Swarm:
    def __init__(self, target: str, keys: list[str], per_channel: int, interval_s: float):
        options = [
            ("grpc.use_local_subchannel_pool", 1),  # otherwise equal channels share a connection
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        n_channels = max(1, -(-len(keys) // per_channel))
        self.channels = [
            grpc.aio.insecure_channel(target, options=options) for _ in range(n_channels)
        ]
        offer = caps(slots=1, services={"echo": "0.1"})
        self.interval_s = interval_s
        self.miners = [
            StreamMiner(
                target,
                key,
                offer,
                channel=self.channels[i % n_channels],
                heartbeat_interval_ms=int(interval_s * 1000),
            )
            for i, key in enumerate(keys)
        ]
        self.sent = 0
        self.late_s = 0.0  # worst lateness of a heartbeat against its schedule (client lag)

    async def connect(self) -> list[asyncio.Task[None]]:
        """Open every stream; each starts heartbeating as soon as it is welcomed (connecting
        10,000 takes longer than the coordinator's missed-heartbeat limit)."""
        beats = []
        for i in range(0, len(self.miners), CONNECT_BATCH):
            batch = self.miners[i : i + CONNECT_BATCH]
            await asyncio.gather(*(m.start() for m in batch))
            beats += [asyncio.create_task(self.beat(m)) for m in batch]
        return beats

    async def beat(self, m: StreamMiner) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + random.uniform(0, self.interval_s)  # spread the phases
        while not m.closed.is_set():
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.late_s = max(self.late_s, loop.time() - due)
            m.heartbeat()
            self.sent += 1
            due += self.interval_s * random.uniform(0.9, 1.1)


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(description="idle heartbeating miner streams")
    ap.add_argument("--target", required=True)
    ap.add_argument("--keys", required=True, help="file: one id=secret per line")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--per-channel", type=int, default=250, help="streams per HTTP/2 connection")
    args = ap.parse_args()
    lines = Path(args.keys).read_text().splitlines()
    return args, [line.strip().partition("=")[2] for line in lines if line.strip()]


async def main(args: argparse.Namespace, keys: list[str]) -> None:
    fd_limit = raise_fd_limit()
    swarm = Swarm(args.target, keys, args.per_channel, args.interval)
    t0 = time.perf_counter()
    beats = await swarm.connect()
    print(f"ready {len(swarm.miners)} {time.perf_counter() - t0:.2f}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def command() -> None:  # "s": print a snapshot line (and reset lateness); EOF: stop
        data = sys.stdin.buffer.read1(64)
        if not data:
            stop.set()
        for _ in range(data.count(b"s")):
            snap = {"sent": swarm.sent, "closed": sum(m.closed.is_set() for m in swarm.miners)}
            print(json.dumps({**snap, "late_max_s": round(swarm.late_s, 3)}), flush=True)
            swarm.late_s = 0.0

    loop.add_reader(sys.stdin.fileno(), command)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    closed = [m for m in swarm.miners if m.closed.is_set()]
    counts = {
        "streams": len(swarm.miners),
        "channels": len(swarm.channels),
        "fd_limit": fd_limit,
        "heartbeats_sent": swarm.sent,
        "worst_heartbeat_lateness_s": round(swarm.late_s, 3),
        "closed_by_coordinator": len(closed),
        "close_errors": sorted({str(m.error.code()) for m in closed if m.error is not None}),
    }
    for t in beats:
        t.cancel()
    for m in swarm.miners:
        with contextlib.suppress(Exception):
            await m.abort()
    for ch in swarm.channels:
        await ch.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*parse_args()))
