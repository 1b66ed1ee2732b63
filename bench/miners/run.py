"""Idle miner streams against one coordinator: RSS, CPU, heartbeats/s, false offline verdicts.

    .venv/bin/python -m bench.miners.run [--miners 1000[,10000]] [--duration 60] [--procs 2]
        [--interval 5] [--per-channel 250] [--settle 10] [--profile DIR]

`aitbc-coordinator` (SQLite) in its own process; the miner streams in `--procs` swarm
processes (bench.miners.swarm), many streams per HTTP/2 connection, each heartbeating every
`--interval` s with jitter. After every stream is welcomed and `--settle` s have passed, the
coordinator's CPU (/proc utime+stime) and RSS are read over `--duration` s; then ListMiners
status counts and the streams the coordinator closed are checked (both must show no miner
dropped). Prints a table and one JSON line; no verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc

from bench.e2e import profile
from bench.e2e.procs import (
    PROFILE_ENV,
    ROOT,
    CoordinatorProc,
    CpuWindow,
    clean_env,
    key_list,
    make_keys,
    rss_mib,
)

STATUS = {v: k for k, v in admin_pb.MinerStatus.items()}


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"--miners: expected e.g. 1000 or 1000,10000, got {text!r}"
        )
    return sizes


async def start_swarms(target: str, keys: dict[str, str], args, tmp: Path) -> list:
    items = list(keys.values())
    procs = []
    for i in range(min(args.procs, len(items))):
        path = tmp / f"swarm-{i}.keys"
        path.write_text("".join(f"k={secret}\n" for secret in items[i :: args.procs]))
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.miners.swarm",
                "--target",
                target,
                "--keys",
                str(path),
                "--interval",
                str(args.interval),
                "--per-channel",
                str(args.per_channel),
                cwd=ROOT,
                env=clean_env({}),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    connect_s = 0.0
    for p in procs:
        line = await asyncio.wait_for(p.stdout.readline(), 120 + len(items) / 20)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"swarm process did not start: {line!r}")
        connect_s = max(connect_s, float(line.split()[2]))
    return procs, connect_s


async def snapshot(procs: list) -> dict[str, float]:
    total = {"sent": 0, "closed": 0, "late_max_s": 0.0}
    for p in procs:
        p.stdin.write(b"s")
        await p.stdin.drain()
        snap = json.loads(await asyncio.wait_for(p.stdout.readline(), 30))
        total["sent"] += snap["sent"]
        total["closed"] += snap["closed"]
        total["late_max_s"] = max(total["late_max_s"], snap["late_max_s"])
    return total


async def stop_swarms(procs: list) -> list[dict]:
    out = []
    for p in procs:
        p.stdin.close()
    for p in procs:
        with contextlib.suppress(TimeoutError, json.JSONDecodeError):
            out.append(json.loads(await asyncio.wait_for(p.stdout.readline(), 120)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(p.wait(), 30)
        if p.returncode is None:
            p.kill()
            await p.wait()
    return out


async def miner_statuses(target: str, admin_key: str, interval: float) -> dict[str, int]:
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    ) as ch:
        resp = await admin_grpc.AdminServiceStub(ch).ListMiners(
            admin_pb.ListMinersRequest(), metadata=(("x-api-key", admin_key),), timeout=120
        )
    now = time.time()
    counts = {"online": 0, "draining": 0, "offline": 0, "unspecified": 0}
    stale = 0
    for m in resp.miners:
        counts[STATUS[m.status].removeprefix("MINER_STATUS_").lower()] += 1
        if now - m.last_heartbeat_at.ToMicroseconds() / 1e6 > 2 * interval:
            stale += 1
    return {**counts, "stale_heartbeat": stale, "listed": len(resp.miners)}


async def run_one(n: int, args) -> dict:
    miner_keys, admin_keys = make_keys("idle-miner", n), make_keys("bench-admin", 1)
    with tempfile.TemporaryDirectory(prefix="aitbc-bench-miners-") as tmp_name:
        tmp = Path(tmp_name)
        # One environment string is capped at 128 KiB: 10,000 keys go through the .env file
        # in the coordinator's working directory instead.
        (tmp / ".env").write_text(f"AITBC_MINER_KEYS={key_list(miner_keys)}\n")
        coord = CoordinatorProc(
            {
                "AITBC_DATA_DIR": str(tmp / "data"),
                "AITBC_CLIENT_KEYS": key_list(make_keys("bench-client", 1)),
                "AITBC_ADMIN_KEYS": key_list(admin_keys),
                "AITBC_LOG_LEVEL": "WARNING",
                "AITBC_HEARTBEAT_INTERVAL_S": str(args.interval),
            },
            tmp,
            label=f"miners-{n}",
            profile_dir=args.profile,
        )
        await coord.start()
        swarms: list = []
        try:
            rss_idle = rss_mib(coord.pid)
            swarms, connect_s = await start_swarms(coord.target, miner_keys, args, tmp)
            await asyncio.sleep(args.settle)
            before = await snapshot(swarms)
            coord.profile_on()
            cpu = CpuWindow(coord.pid).start()
            swarm_cpu = [CpuWindow(p.pid).start() for p in swarms]
            rss_max = rss_mib(coord.pid)
            end = time.perf_counter() + args.duration
            while (left := end - time.perf_counter()) > 0:
                await asyncio.sleep(min(1.0, left))
                rss_max = max(rss_max, rss_mib(coord.pid))
            after = await snapshot(swarms)
            cpu.stop()
            coord.profile_off()
            swarm_pct = sum(c.stop().percent for c in swarm_cpu)
            rss_end = rss_mib(coord.pid)
            statuses = await miner_statuses(coord.target, *admin_keys.values(), args.interval)
        finally:
            final = await stop_swarms(swarms)
            await coord.stop()
    return {
        "miners": n,
        "connect_s": round(connect_s, 2),
        "window_s": round(cpu.wall, 1),
        "rss_idle_mib": round(rss_idle, 1),
        "rss_mib": round(rss_end, 1),
        "rss_max_mib": round(rss_max, 1),
        "kib_per_miner": round((rss_end - rss_idle) * 1024 / n, 1),
        "cpu_pct": round(cpu.percent, 1),
        "threads": cpu.top_threads(),
        "heartbeats_per_s": round((after["sent"] - before["sent"]) / cpu.wall, 1),
        "expected_per_s": round(n / args.interval, 1),
        "late_max_s": after["late_max_s"],
        "swarm_cpu_pct": round(swarm_pct, 1),
        **{f"status_{k}": v for k, v in statuses.items()},
        "closed_by_coordinator": max(
            after["closed"], sum(f["closed_by_coordinator"] for f in final)
        ),
        "swarms": final,
        "profile": str(coord.profile_path or ""),
    }


def table(rows: list[dict]) -> str:
    head = (
        f"{'miners':>7} {'rss MiB':>8} {'KiB/miner':>9} {'cpu %':>6} {'hb/s':>7} {'expected':>8} "
        f"{'online':>7} {'offline':>7} {'stale':>6} {'closed':>6} {'connect s':>9}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(
            f"{r['miners']:>7} {r['rss_mib']:>8.1f} {r['kib_per_miner']:>9.1f} {r['cpu_pct']:>6.1f} "
            f"{r['heartbeats_per_s']:>7.1f} {r['expected_per_s']:>8.1f} {r['status_online']:>7} "
            f"{r['status_offline']:>7} {r['status_stale_heartbeat']:>6} "
            f"{r['closed_by_coordinator']:>6} {r['connect_s']:>9.1f}"
        )
    return "\n".join(out)


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench.miners.run", description=__doc__.splitlines()[0])
    ap.add_argument("--miners", type=_sizes, default=[1000], help="e.g. 1000 or 1000,10000")
    ap.add_argument("--duration", type=float, default=60.0, help="measured window, seconds")
    ap.add_argument("--procs", type=int, default=2, help="swarm processes")
    ap.add_argument("--interval", type=float, default=5.0, help="heartbeat interval, seconds")
    ap.add_argument("--per-channel", type=int, default=250, help="streams per connection")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds between connect and window")
    ap.add_argument("--profile", type=Path, default=os.environ.get(PROFILE_ENV) or None)
    args = ap.parse_args(argv)
    rows = []
    for n in args.miners:
        print(
            f"{n} idle miner streams, heartbeat every {args.interval} s, window {args.duration} s",
            flush=True,
        )
        r = await run_one(n, args)
        print(
            f"  connected in {r['connect_s']} s; coordinator RSS idle {r['rss_idle_mib']} MiB -> "
            f"{r['rss_mib']} MiB (max {r['rss_max_mib']}); CPU {r['cpu_pct']}% of one core "
            f"({r['threads']}); swarm CPU {r['swarm_cpu_pct']}%; worst heartbeat lateness "
            f"{r['late_max_s']} s; statuses listed {r['status_listed']}: online "
            f"{r['status_online']}, draining {r['status_draining']}, offline {r['status_offline']}; "
            f"swarms {r['swarms']}",
            flush=True,
        )
        rows.append(r)
    print()
    print(table(rows))
    print(
        "hb/s: heartbeats sent by the swarms over the window (all on open streams); stale: miners"
        "\nwhose last_heartbeat_at (ListMiners) is older than 2 intervals; closed: streams the"
        "\ncoordinator ended. cpu %: coordinator process, % of one core."
    )
    for r in rows:
        if r["profile"]:
            print()
            print(profile.summary(r["profile"]))
    slim = [{k: v for k, v in r.items() if k not in ("swarms", "threads", "profile")} for r in rows]
    print(json.dumps({"bench": "miners", "interval_s": args.interval, "runs": slim}))


if __name__ == "__main__":
    asyncio.run(main())
