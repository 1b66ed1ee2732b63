"""Rich views for humans: a job panel, job/miner/key tables and the stats panel."""

from __future__ import annotations

import json
from collections.abc import Iterable

from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import receipt_service_pb2 as receipt_pb
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATE_STYLE = {
    "QUEUED": "yellow",
    "ASSIGNED": "cyan",
    "RUNNING": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELED": "magenta",
    "EXPIRED": "red",
}


def state_name(state: int) -> str:
    return job_pb.JobState.Name(state).removeprefix("JOB_STATE_")


def miner_status_name(status: int) -> str:
    return admin_pb.MinerStatus.Name(status).removeprefix("MINER_STATUS_").lower()


def state_text(state: int) -> Text:
    name = state_name(state)
    return Text(name, style=STATE_STYLE.get(name, ""))


def when(msg: Message, field: str, fmt: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """A Timestamp field in UTC (full by default, compact for tables), or "-" when unset."""
    if not msg.HasField(field):
        return "-"
    return getattr(msg, field).ToDatetime().strftime(fmt)


SHORT = "%m-%d %H:%M:%S"


def grid_table(
    headers: tuple[str, ...],
    rows: list[tuple[str | Text, ...]],
    *,
    keep: tuple[str, ...] = (),
    wrap: tuple[str, ...] = (),
    title: str | None = None,
) -> Table:
    """A borderless table. `keep` columns (ids people copy) are never cut; `wrap` columns
    wrap; the others stay on one line and are cut with an ellipsis when space runs out."""
    table = Table(box=None, header_style="bold", title=title)
    for i, header in enumerate(headers):
        longest = max([len(header), *(len(str(r[i])) for r in rows)])
        # Kept columns get their full width; wrapped ones at least a readable one.
        width = longest if header in keep else min(longest, 16) if header in wrap else None
        table.add_column(
            header,
            no_wrap=header not in wrap,
            overflow="fold" if header in wrap else "ellipsis",
            min_width=width,
        )
    for row in rows:
        table.add_row(*row)
    return table


def short_json(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_summary(result: job_pb.JobResult) -> str:
    kind = result.WhichOneof("kind")
    if kind == "inline":
        return short_json(json_format.MessageToDict(result.inline))
    if kind == "artifact":
        a = result.artifact
        return f"artifact {a.url} ({a.size_bytes} bytes, sha256 {a.sha256[:12]}…)"
    return "-"


def job_panel(job: job_pb.Job) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("state", state_text(job.state)),
        ("service", job.payload.service),
        ("miner", job.miner_id or "-"),
        ("attempt", str(job.attempt)),
        ("created", when(job, "created_at")),
    ]
    for label, name in (
        ("assigned", "assigned_at"),
        ("started", "started_at"),
        ("finished", "finished_at"),
    ):
        if job.HasField(name):
            rows.append((label, when(job, name)))
    if job.HasField("progress") and (job.progress.fraction or job.progress.message):
        rows.append(("progress", f"{job.progress.fraction:.0%} {job.progress.message}".strip()))
    if job.waiting_reason:
        rows.append(("waiting", job.waiting_reason))
    if job.error.code or job.error.message:
        rows.append(("error", Text(f"{job.error.code}: {job.error.message}", style="red")))
    if job.HasField("result"):
        rows.append(("result", result_summary(job.result)))
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(value))
    return Panel(grid, title=Text(job.job_id), title_align="left", expand=False)


def jobs_table(jobs: Iterable[job_pb.Job]) -> Table:
    rows = []
    for job in jobs:
        if job.error.code:
            note = f"{job.error.code}: {job.error.message}"
        elif job.waiting_reason:
            note = job.waiting_reason
        else:
            note = (
                f"{job.progress.fraction:.0%} {job.progress.message}"
                if job.progress.message
                else ""
            )
        rows.append(
            (
                job.job_id,
                state_text(job.state),
                Text(job.payload.service),
                Text(job.miner_id or "-"),
                str(job.attempt),
                when(job, "created_at", SHORT),
                Text(note),
            )
        )
    headers = ("job_id", "state", "service", "miner", "try", "created", "note")
    return grid_table(headers, rows, keep=("job_id", "state"), wrap=("note",))


def miners_table(miners: Iterable[admin_pb.MinerInfo]) -> Table:
    rows = []
    for m in miners:
        caps = m.capabilities
        rows.append(
            (
                m.miner_id,
                miner_status_name(m.status),
                m.mode,
                f"{m.inflight}/{m.slots}",
                when(m, "last_heartbeat_at", SHORT),
                str(m.completed),
                str(m.failed),
                f"{m.avg_duration_ms:.0f}",
                Text(", ".join(f"{s.service}@{s.unit_price}" for s in caps.services)),
                Text(", ".join(g.name for g in caps.gpus) or "-"),
                Text(caps.region or "-"),
            )
        )
    headers = (
        "miner", "status", "mode", "busy", "last seen", "done", "failed", "avg ms",
        "services", "gpus", "region",
    )  # fmt: skip
    return grid_table(headers, rows, keep=("miner", "status"), wrap=("services", "gpus"))


def stats_panel(stats: admin_pb.GetStatsResponse) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    for name in sorted(stats.jobs_by_state):
        grid.add_row(
            f"jobs {name.removeprefix('JOB_STATE_').lower()}", str(stats.jobs_by_state[name])
        )
    grid.add_row("queue depth", str(stats.queue_depth))
    grid.add_row(
        "miners",
        f"{stats.miners_online} online, {stats.miners_draining} draining, "
        f"{stats.miners_offline} offline",
    )
    grid.add_row(f"completed (last {stats.window_seconds} s)", str(stats.completed_in_window))
    grid.add_row("throughput", f"{stats.throughput_per_second:.3f} jobs/s")
    grid.add_row("latency p50 / p99", f"{stats.latency_p50_ms:.0f} / {stats.latency_p99_ms:.0f} ms")
    return Panel(grid, title="coordinator stats", title_align="left", expand=False)


def keys_table(resp: receipt_pb.ListKeysResponse) -> Table:
    rows = [
        (
            k.key_id,
            k.purpose,
            k.alg,
            when(k, "valid_from", SHORT),
            when(k, "valid_until", SHORT) if k.HasField("valid_until") else "current",
        )
        for k in resp.keys
    ]
    headers = ("key_id", "purpose", "alg", "valid from", "valid until")
    return grid_table(headers, rows, keep=("key_id",), title=f"coordinator {resp.coordinator_id}")
