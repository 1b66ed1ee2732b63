"""Echo miners for bench.e2e: K protocol-level streams answering each assignment at once.

    python -m bench.e2e.miner --target HOST:PORT [--slots S] [--channels C]

Miner keys come from BENCH_MINER_KEYS ("id=secret,...": one stream per key). Prints
"ready <K>" once every stream has its welcome; runs until stdin closes or SIGTERM, then
prints one JSON line of counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

import grpc
from google.protobuf import json_format

from coordinator.testing import StreamMiner, caps


async def serve(m: StreamMiner, counts: dict[str, int]) -> None:
    while True:
        msg = await m.next(timeout=86400)  # no kind: nothing is stashed (stash scans are O(n))
        kind = msg.WhichOneof("msg")
        if kind == "assignment":
            a = msg.assignment
            m.started(a)
            m.result(a, json_format.MessageToDict(a.job.payload.parameters))
            counts["assignments"] += 1
        elif kind == "ack":
            counts["acks" if msg.ack.accepted else "rejected"] += 1
        else:
            counts[kind or "empty"] = counts.get(kind or "empty", 0) + 1


async def main() -> None:
    ap = argparse.ArgumentParser(description="echo stream miners")
    ap.add_argument("--target", required=True)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--channels", type=int, default=0, help="0: one per stream, at most 8")
    args = ap.parse_args()
    keys = [p.partition("=")[2] for p in os.environ["BENCH_MINER_KEYS"].split(",") if p]
    n_channels = args.channels or min(len(keys), 8)
    # A local subchannel pool per channel: otherwise equal channels share one connection.
    channels = [
        grpc.aio.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(n_channels)
    ]
    offer = caps(slots=args.slots, services={"echo": "0.1"})
    miners = [
        StreamMiner(args.target, key, offer, channel=channels[i % n_channels])
        for i, key in enumerate(keys)
    ]
    await asyncio.gather(*(m.start() for m in miners))
    counts = {"assignments": 0, "acks": 0, "rejected": 0}
    tasks = [asyncio.create_task(serve(m, counts)) for m in miners]
    print(f"ready {len(miners)}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(1) or stop.set())
    closed = asyncio.gather(*(m.closed.wait() for m in miners))
    await asyncio.wait(
        [asyncio.ensure_future(stop.wait()), closed], return_when=asyncio.FIRST_COMPLETED
    )
    counts["closed_by_coordinator"] = sum(m.closed.is_set() for m in miners)
    for t in tasks:
        t.cancel()
    for m in miners:
        with contextlib.suppress(Exception):
            await m.abort()
    for ch in channels:
        await ch.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
