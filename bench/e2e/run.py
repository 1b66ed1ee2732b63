"""End-to-end jobs/s and latency: AITBC coordinator (SQLite, PostgreSQL) vs Celery 5 + Redis.

    .venv/bin/python -m bench.e2e.run [--jobs N] [--miners K] [--slots S] [--concurrency C]
        [--warmup W] [--backends sqlite,postgres] [--celery/--no-celery] [--profile DIR]

AITBC: `aitbc-coordinator` in its own process, K echo stream miners in another, and this
process submitting N jobs over one gRPC channel (C in flight), timed from the first submit
until GetStats counts all N COMPLETED. Celery: one prefork worker node (concurrency K)
and N apply_async calls joined. Prints a comparison table and one JSON line; no verdict.
With --profile DIR (or BENCH_PROFILE=DIR) the coordinator runs under cProfile and the top
functions by cumulative time are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from bench.e2e import aitbc_side, celery_side, profile
from bench.e2e.aitbc_side import Workload
from bench.e2e.procs import PROFILE_ENV
from bench.e2e.stats import (
    Outcome,
    json_line,
    median_ratio_table,
    median_table,
    ratio_table,
    table,
)
from core.testing import POSTGRES_URL, REDIS_URL, tcp_reachable

BACKENDS = ("sqlite", "postgres")
LEGEND = """\
jobs/s: N jobs, first submit -> all N durably COMPLETED (GetStats poll every 20 ms).
p50/p99: AITBC finished_at - created_at (server clock); Celery date_done - client send time.
send p50: completion time - client send time, both sides (same clock: one machine).
rtt p50/p99: one job at a time after the burst: send -> client sees completion (AITBC
  SubmitJob + WatchJob stream; Celery apply_async + AsyncResult.get, Redis pub/sub).
-batchN rows: the same jobs submitted in SubmitJobs calls of N (stream miners; no rtt).
rtt1 p50: the same as one call: SubmitJob with wait_seconds, answered once COMPLETED
  (AITBC only, alternating with the rtt jobs; rtt1 x is against Celery's rtt p50).
cpu ms/job: CPU of the coordinator process / Celery worker node (parent + children) per job.
db ms/job: CPU of the local PostgreSQL server (its processes) / Redis server per job ("-":
  SQLite, inside the coordinator's writer process, or a server on another machine).
thr x, p50 x, send x, rtt x: ratio to Celery (jobs/s: higher is better; latencies: lower).
celery-redis-fsync: Celery against a Redis server of the benchmark's own that fsyncs every
  write before answering (appendfsync always), as the coordinator commits before it answers;
  the machine's Redis (celery-redis) keeps nothing on disk."""
DURABLE = "celery-redis-fsync"


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--backends: expected a list of {BACKENDS}, got {text!r}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return value


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("AITBC_"):
        raise argparse.ArgumentTypeError(f"expected AITBC_KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench.e2e.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    ap.add_argument("--jobs", type=_positive, default=3000)
    ap.add_argument(
        "--miners", type=_positive, default=2, help="miner streams = Celery concurrency"
    )
    ap.add_argument("--slots", type=_positive, default=16, help="slots (credit) per miner stream")
    ap.add_argument("--concurrency", type=_positive, default=64, help="submits in flight")
    ap.add_argument("--warmup", type=_count, default=200)
    ap.add_argument("--miner-procs", type=_positive, default=1)
    ap.add_argument(
        "--rtt-jobs", type=_count, default=200, help="then jobs one at a time (unloaded round trip)"
    )
    ap.add_argument("--backends", type=_backends, default=list(BACKENDS))
    ap.add_argument(
        "--miner-modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=["stream", "agent"],
        help="stream: protocol-level miners; agent: real aitbc-miner processes (comma list)",
    )
    ap.add_argument(
        "--submit-batch",
        type=_count,
        default=16,
        help="also run each backend (stream miners) submitting SubmitJobs calls of this many "
        "jobs, concurrency/N calls in flight; 0: unary SubmitJob rows only",
    )
    ap.add_argument(
        "--submit-stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run each backend (stream miners) submitting one message per job on one "
        "SubmitJobStream call (concurrency awaiting their answer); round trips on the stream",
    )
    ap.add_argument("--celery", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--celery-durable",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --celery, also run Celery against a Redis server of the benchmark's own "
        "with appendfsync always (every write fsync'd, as the coordinator's commits are)",
    )
    ap.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="run every side this many times, Celery first in every other round; then print "
        "medians and the median of the per-round ratios (a shared box drifts between sides)",
    )
    ap.add_argument(
        "--coordinator-env",
        type=_setting,
        action="append",
        default=[],
        metavar="AITBC_KEY=VALUE",
        help="an extra setting for the AITBC coordinator (repeatable), e.g. "
        "AITBC_PREFETCH_PER_SLOT=0 for an A/B run",
    )
    ap.add_argument("--pg-url", default=POSTGRES_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--profile", type=Path, default=os.environ.get(PROFILE_ENV) or None)
    ap.add_argument("--profile-top", type=int, default=25)
    return ap.parse_args(argv)


async def _one_round(
    args: argparse.Namespace, w: Workload, *, celery_first: bool
) -> tuple[list[Outcome], Outcome | None]:
    """Every AITBC side, and Celery before or after them."""
    outcomes: list[Outcome] = []
    baseline = None
    if args.celery and celery_first:
        baseline = await _celery(w, args)
    for backend in args.backends:
        if backend == "postgres" and not tcp_reachable("127.0.0.1", 5432):
            print("postgres: not reachable at 127.0.0.1:5432, skipped", flush=True)
            continue
        for mode in args.miner_modes:
            if mode not in ("stream", "agent"):
                raise SystemExit(f"--miner-modes: unknown mode {mode!r} (stream, agent)")
            o = await aitbc_side.run(
                backend,
                dataclasses.replace(w, miner_mode=mode),
                pg_url=args.pg_url,
                profile_dir=args.profile,
            )
            _print_side(o)
            outcomes.append(o)
        if args.submit_batch:
            # The same jobs, submitted in SubmitJobs calls (a different client workload from
            # Celery's one apply_async per task: printed as rows of their own).
            o = await aitbc_side.run(
                backend,
                dataclasses.replace(w, submit_batch=args.submit_batch, rtt_jobs=0),
                pg_url=args.pg_url,
                profile_dir=args.profile,
            )
            _print_side(o)
            outcomes.append(o)
        if args.submit_stream:
            # One message per job, as Celery's one apply_async per task, on one open stream.
            o = await aitbc_side.run(
                backend,
                dataclasses.replace(w, submit_stream=True),
                pg_url=args.pg_url,
                profile_dir=args.profile,
            )
            _print_side(o)
            outcomes.append(o)
    if args.celery and not celery_first:
        baseline = await _celery(w, args)
    if baseline is not None:
        outcomes.append(baseline)
    if args.celery and args.celery_durable:
        outcomes.append(await _celery_durable(w))
    return outcomes, baseline


def _print_side(o: Outcome) -> None:
    print(
        f"  {o.name}: {o.jobs_per_s:.0f} jobs/s, submits took {o.extra['submit_s']} s, "
        f"CPU % of one core: coordinator {o.server_cpu_pct:.0f} ({o.extra['threads']}), "
        f"client {o.extra['client_cpu_pct']}, miners {o.extra['miner_cpu_pct']}; "
        f"miner counters {o.extra['miners']}",
        flush=True,
    )


async def _celery(w: Workload, args: argparse.Namespace) -> Outcome:
    return _print_celery(await asyncio.to_thread(celery_side.run, w, redis_url=args.redis_url))


async def _celery_durable(w: Workload) -> Outcome:
    return _print_celery(await asyncio.to_thread(celery_side.run_durable, w))


def _print_celery(o: Outcome) -> Outcome:
    print(
        f"  {o.name}: {o.jobs_per_s:.0f} jobs/s, publishing took {o.extra['submit_s']} s, "
        f"CPU % of one core: worker node {o.server_cpu_pct:.0f}, "
        f"client {o.extra['client_cpu_pct']}",
        flush=True,
    )
    return o


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    w = Workload(
        args.jobs,
        args.miners,
        args.slots,
        args.concurrency,
        args.warmup,
        args.miner_procs,
        args.rtt_jobs,
        coordinator_env=tuple(args.coordinator_env),
    )
    print(
        f"e2e: {w.jobs} echo jobs, {w.miners} miners x {w.slots} slots "
        f"(Celery: concurrency {w.miners}), {w.concurrency} submits in flight, warm-up {w.warmup}"
        + "".join(f", {k}={v}" for k, v in w.coordinator_env),
        flush=True,
    )
    load0 = _load()
    rounds: list[tuple[list[Outcome], Outcome | None]] = []
    for r in range(args.rounds):
        if args.rounds > 1:
            print(f"round {r + 1} of {args.rounds}", flush=True)
        rounds.append(await _one_round(args, w, celery_first=r % 2 == 1))
    outcomes, baseline = rounds[-1]
    print()
    if args.rounds > 1:
        for i, (outs, base) in enumerate(rounds, start=1):
            print(f"round {i}")
            print(table(outs, base))
            print()
        print(f"medians of {args.rounds} rounds (ratios: median of the per-round ratios)")
        print(median_table(rounds))
        if any(o.name == DURABLE for o in outcomes):
            print()
            print(f"against {DURABLE}, medians of the per-round ratios")
            print(median_ratio_table(rounds, DURABLE))
    else:
        print(table(outcomes, baseline))
        durable = next((o for o in outcomes if o.name == DURABLE), None)
        if durable is not None:
            print()
            print(f"against {DURABLE}")
            print(ratio_table([o for o in outcomes if o is not baseline], durable))
    print(LEGEND)
    print(f"load average before/after: {load0} / {_load()} (other work on this box skews results)")
    for o in outcomes:
        if o.extra.get("profile"):
            print()
            print(profile.summary(o.extra["profile"], args.profile_top))
    params = {
        "jobs": w.jobs,
        "miners": w.miners,
        "slots": w.slots,
        "concurrency": w.concurrency,
        "warmup": w.warmup,
        "rtt_jobs": w.rtt_jobs,
        "cores": os.cpu_count(),
        "loadavg_before": load0,
        **({"coordinator_env": dict(w.coordinator_env)} if w.coordinator_env else {}),
    }
    for i, (outs, base) in enumerate(rounds, start=1):
        print(json_line(outs, base, {**params, "round": i} if args.rounds > 1 else params))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
