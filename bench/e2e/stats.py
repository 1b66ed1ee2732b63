"""Outcome of one e2e side, percentiles, and the comparison table (no verdict)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100), at least 1
    return sorted_values[int(rank) - 1]


@dataclass
class Outcome:
    name: str
    jobs: int
    seconds: float
    jobs_per_s: float
    p50_ms: float  # AITBC: finished_at - created_at; Celery: date_done - client send
    p99_ms: float
    send_p50_ms: float  # both sides: completion time - client send time
    send_p99_ms: float
    server_cpu_pct: float  # coordinator process / Celery worker node, % of one core
    server_cpu_ms_per_job: float  # the same CPU, per measured job
    # CPU of a local PostgreSQL (AITBC) or Redis (Celery) server per job; 0: none or not local
    db_cpu_ms_per_job: float = 0.0
    rtt_p50_ms: float = 0.0  # one job at a time: submit -> client sees COMPLETED (push)
    rtt_p99_ms: float = 0.0
    # AITBC only: the same, as one call (SubmitJob with wait_seconds); Celery has one way.
    rtt1_p50_ms: float = 0.0
    rtt1_p99_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _ms(value: float) -> str:
    return f"{value:.2f}" if value else "-"  # 0: not measured on this side


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else "-"


def table(outcomes: list[Outcome], base: Outcome | None) -> str:
    head = (
        f"{'side':<22} {'jobs/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'send p50':>9} "
        f"{'rtt p50':>8} {'rtt p99':>8} {'rtt1 p50':>8} {'cpu ms/job':>10} {'db ms/job':>9} "
        f"{'thr x':>6} "
        f"{'p50 x':>6} {'send x':>6} {'rtt x':>6} {'rtt1 x':>6}"
    )
    rows = [head, "-" * len(head)]
    for o in outcomes:
        rows.append(
            f"{o.name:<22} {o.jobs_per_s:>7.0f} {o.p50_ms:>8.1f} {o.p99_ms:>8.1f} "
            f"{o.send_p50_ms:>9.1f} {_ms(o.rtt_p50_ms):>8} {_ms(o.rtt_p99_ms):>8} "
            f"{_ms(o.rtt1_p50_ms):>8} "
            f"{o.server_cpu_ms_per_job:>10.2f} {_ms(o.db_cpu_ms_per_job):>9} "
            f"{_ratio(o.jobs_per_s, base and base.jobs_per_s):>6} "
            f"{_ratio(o.p50_ms, base and base.p50_ms):>6} "
            f"{_ratio(o.send_p50_ms, base and base.send_p50_ms):>6} "
            f"{_ratio(o.rtt_p50_ms, base and o.rtt_p50_ms and base.rtt_p50_ms):>6} "
            f"{_ratio(o.rtt1_p50_ms, base and o.rtt1_p50_ms and base.rtt_p50_ms):>6}"
        )
    return "\n".join(rows)


def json_line(outcomes: list[Outcome], baseline: Outcome | None, params: dict[str, Any]) -> str:
    out: dict[str, Any] = {"bench": "e2e", **params, "sides": {}}
    for o in outcomes:
        d = asdict(o)
        d.pop("extra")
        d = {k: round(v, 2) if isinstance(v, float) else v for k, v in d.items()}
        if baseline is not None and o is not baseline:
            d["throughput_ratio"] = round(o.jobs_per_s / baseline.jobs_per_s, 3)
            for key in ("p50_ms", "send_p50_ms", "rtt_p50_ms"):
                ref = getattr(baseline, key)
                mine = getattr(o, key)
                d[key.replace("_ms", "_ratio")] = round(mine / ref, 3) if ref and mine else None
            if o.rtt1_p50_ms and baseline.rtt_p50_ms:  # against Celery's one way
                d["rtt1_p50_ratio"] = round(o.rtt1_p50_ms / baseline.rtt_p50_ms, 3)
        out["sides"][d.pop("name")] = d
    return json.dumps(out, separators=(",", ":"))


def median_table(rounds: list[tuple[list[Outcome], Outcome | None]]) -> str:
    """Per side: median jobs/s and rtt p50 over the rounds (with the range), and the median of
    each round's ratio to that round's Celery run."""
    names = [o.name for o in rounds[0][0]]
    head = (
        f"{'side':<22} {'jobs/s':>7} {'range':>11} {'rtt p50':>8} {'range':>13} "
        f"{'rtt1 p50':>8} {'thr x':>6} {'rtt x':>6} {'rtt1 x':>6}"
    )
    rows = [head, "-" * len(head)]
    for name in names:
        runs = [(o, base) for outs, base in rounds for o in outs if o.name == name]
        thr = sorted(o.jobs_per_s for o, _ in runs)
        rtt = sorted(o.rtt_p50_ms for o, _ in runs if o.rtt_p50_ms)
        paired = [(o, b) for o, b in runs if b is not None and o is not b]
        thr_x = [o.jobs_per_s / b.jobs_per_s for o, b in paired if b.jobs_per_s]
        rtt_x = [o.rtt_p50_ms / b.rtt_p50_ms for o, b in paired if o.rtt_p50_ms and b.rtt_p50_ms]
        rtt1 = sorted(o.rtt1_p50_ms for o, _ in runs if o.rtt1_p50_ms)
        rtt1_x = [o.rtt1_p50_ms / b.rtt_p50_ms for o, b in paired if o.rtt1_p50_ms and b.rtt_p50_ms]
        rows.append(
            f"{name:<22} {statistics.median(thr):>7.0f} {f'{thr[0]:.0f}-{thr[-1]:.0f}':>11} "
            f"{f'{statistics.median(rtt):.2f}' if rtt else '-':>8} "
            f"{f'{rtt[0]:.2f}-{rtt[-1]:.2f}' if rtt else '-':>13} "
            f"{f'{statistics.median(rtt1):.2f}' if rtt1 else '-':>8} "
            f"{f'{statistics.median(thr_x):.2f}' if thr_x else '-':>6} "
            f"{f'{statistics.median(rtt_x):.2f}' if rtt_x else '-':>6} "
            f"{f'{statistics.median(rtt1_x):.2f}' if rtt1_x else '-':>6}"
        )
    return "\n".join(rows)


def ratio_table(outcomes: list[Outcome], ref: Outcome) -> str:
    """Each side's ratios to another reference side (rtt1 against the reference's rtt)."""
    head = f"{'side':<22} {'thr x':>6} {'p50 x':>6} {'send x':>6} {'rtt x':>6} {'rtt1 x':>6}"
    rows = [head, "-" * len(head)]
    for o in outcomes:
        if o is ref:
            continue
        rows.append(
            f"{o.name:<22} {_ratio(o.jobs_per_s, ref.jobs_per_s):>6} "
            f"{_ratio(o.p50_ms, ref.p50_ms):>6} {_ratio(o.send_p50_ms, ref.send_p50_ms):>6} "
            f"{_ratio(o.rtt_p50_ms, o.rtt_p50_ms and ref.rtt_p50_ms):>6} "
            f"{_ratio(o.rtt1_p50_ms, o.rtt1_p50_ms and ref.rtt_p50_ms):>6}"
        )
    return "\n".join(rows)


def median_ratio_table(rounds: list[tuple[list[Outcome], Outcome | None]], ref_name: str) -> str:
    """Per side: the median over the rounds of its ratios to that round's `ref_name` side."""
    names = [o.name for o in rounds[0][0] if o.name != ref_name]
    head = f"{'side':<22} {'thr x':>6} {'rtt x':>6} {'rtt1 x':>6}"
    rows = [head, "-" * len(head)]

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}" if values else "-"

    for name in names:
        pairs = []
        for outs, _ in rounds:
            ref = next((o for o in outs if o.name == ref_name), None)
            pairs += [(o, ref) for o in outs if o.name == name and ref is not None]
        thr = [o.jobs_per_s / r.jobs_per_s for o, r in pairs if r.jobs_per_s]
        rtt = [o.rtt_p50_ms / r.rtt_p50_ms for o, r in pairs if o.rtt_p50_ms and r.rtt_p50_ms]
        rtt1 = [o.rtt1_p50_ms / r.rtt_p50_ms for o, r in pairs if o.rtt1_p50_ms and r.rtt_p50_ms]
        rows.append(f"{name:<22} {med(thr):>6} {med(rtt):>6} {med(rtt1):>6}")
    return "\n".join(rows)
