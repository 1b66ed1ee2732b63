"""`aitbc jobs`: submit, submit-many, get, watch, result, cancel, list."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from aitbc.coordinator.v1 import job_pb2 as job_pb
from google.protobuf import json_format
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn
from rich.text import Text

from client import download, render
from client.cli_common import EXIT_API, CliError, Ctx, command, read_input, to_dict, usage
from client.errors import SdkError
from client.sdk import MAX_BATCH, TERMINAL_STATES, batch_item
from core.errors import InvalidArgument

app = typer.Typer(help="Submit, follow and manage your jobs.", no_args_is_help=True)

JobId = Annotated[str, typer.Argument(help="Job id (job_<32 hex>).", show_default=False)]


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON: keep such values as strings


def _param_value(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_params(
    params: list[str], params_json: str | None, params_file: str | None
) -> dict[str, Any]:
    """--params-json or --params-file (an object), then each --param k=v on top of it."""
    if params_json is not None and params_file is not None:
        raise usage("--params-json and --params-file are exclusive")
    out: dict[str, Any] = {}
    source, raw = None, None
    if params_json is not None:
        source, raw = "--params-json", params_json
    elif params_file is not None:
        source = "--params-file"
        raw = read_input(params_file, source).decode("utf-8", errors="replace")
    if raw is not None:
        try:
            doc = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            raise usage(f"{source}: not valid JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise usage(f"{source}: must be a JSON object, got {type(doc).__name__}")
        out.update(doc)
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise usage(f"--param: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = _param_value(value)
    return out


def _exit_for(job: job_pb.Job) -> None:
    """Exit 0 for COMPLETED; otherwise one line naming the state and error, exit 1."""
    if job.state == job_pb.JOB_STATE_COMPLETED:
        return
    if job.state in TERMINAL_STATES:
        raise CliError(_job_error(job.job_id, job.state, job.error), EXIT_API)
    raise CliError(f"job {job.job_id} is still {render.state_name(job.state)}", EXIT_API)


def follow(ctx: Ctx, job_id: str) -> None:
    """Watch until terminal: a live bar (or JSON lines with --json); exit 0 only if COMPLETED."""
    job = None
    if ctx.json:
        for event, job in ctx.client.watch_job(job_id):
            ctx.emit({"event": event, "job": to_dict(job)})
    else:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.fields[state]:<9}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}", markup=False),  # miner text is not markup
        )
        with Progress(*columns, console=ctx.console) as bar:
            task = bar.add_task(job_id, total=1.0, state="", note="")
            last_state = None
            for _, job in ctx.client.watch_job(job_id):
                state = render.state_name(job.state)
                if job.state != last_state:
                    where = f" on {job.miner_id}" if job.miner_id else ""
                    bar.console.print(Text(f"{job_id} {state}{where}"))
                    last_state = job.state
                note = job.progress.message or job.waiting_reason
                done = 1.0 if job.state == job_pb.JOB_STATE_COMPLETED else job.progress.fraction
                bar.update(task, completed=done, state=state, note=note, refresh=True)
    if job is None:
        raise CliError(f"watch of {job_id} ended without an event")
    if not ctx.json:
        ctx.console.print(render.job_panel(job))
    _exit_for(job)


@command(app, "submit")
def submit(
    ctx: Ctx,
    service: Annotated[str, typer.Argument(help="Registry service, e.g. echo, whisper.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE (VALUE as JSON when it parses)."),
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help="Parameters as a JSON object.")
    ] = None,
    params_file: Annotated[
        str | None, typer.Option("--params-file", help="JSON object file ('-': stdin).")
    ] = None,
    gpu: Annotated[
        list[str] | None, typer.Option("--gpu", help="Acceptable GPU name (repeatable).")
    ] = None,
    min_vram_gb: Annotated[int, typer.Option("--min-vram-gb", min=0)] = 0,
    region: Annotated[str, typer.Option("--region", help="Exact region, e.g. eu-west.")] = "",
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Required model (repeatable).")
    ] = None,
    min_cuda: Annotated[str, typer.Option("--min-cuda", help="e.g. 12.1")] = "",
    max_price: Annotated[str, typer.Option("--max-price", help="Highest unit price.")] = "",
    priority: Annotated[int, typer.Option("--priority", min=0, max=9)] = 0,
    ttl: Annotated[int, typer.Option("--ttl", min=0, help="Queue wait limit, s.")] = 0,
    run_timeout: Annotated[int, typer.Option("--run-timeout", min=0, help="Run limit, s.")] = 0,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Repeat-safe submit key.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
) -> None:
    """Submit a job."""
    parameters = parse_params(param or [], params_json, params_file)
    constraints = {
        "gpu_names": gpu or [],
        "min_vram_gb": min_vram_gb,
        "region": region,
        "models": model or [],
        "min_cuda": min_cuda,
        "max_price": max_price,
        "priority": priority,
    }
    job = ctx.client.submit_job(
        service,
        parameters,
        constraints=constraints,
        ttl_seconds=ttl,
        run_timeout_seconds=run_timeout,
        idempotency_key=idempotency_key,
    )
    if wait:
        if not ctx.json:
            ctx.console.print(Text(f"submitted {job.job_id}"))
        follow(ctx, job.job_id)
    elif ctx.json:
        ctx.emit(job)
    else:
        ctx.console.print(render.job_panel(job))


@command(app, "submit-many")
def submit_many(
    ctx: Ctx,
    file: Annotated[
        str,
        typer.Argument(
            help="JSON Lines, one job per line ('-': stdin): "
            '{"service": "echo", "parameters": {...}, "constraints": {...}, "ttl_seconds": 60, '
            '"run_timeout_seconds": 60, "idempotency_key": "..."} (only service is required).',
            show_default=False,
        ),
    ],
) -> None:
    """Submit many jobs, up to 100 per call; exit 1 when any of them was refused."""
    jobs = _job_lines(read_input(file, "FILE").decode("utf-8", errors="replace"))
    results: list[tuple[int, job_pb.Job | None, Any]] = []
    failed: SdkError | None = None  # a whole call refused: the lines after it are not sent
    for start in range(0, len(jobs), MAX_BATCH):
        chunk = jobs[start : start + MAX_BATCH]
        if failed is not None:
            unsent = SdkError(failed.code, f"not sent (an earlier call failed: {failed.message})")
            results += [(line, None, unsent) for line, _ in chunk]
            continue
        try:
            answers = ctx.client.submit_jobs([job for _, job in chunk])
        except SdkError as exc:
            failed = exc
            results += [(line, None, exc) for line, _ in chunk]
            continue
        results += [(line, job, err) for (line, _), (job, err) in zip(chunk, answers, strict=True)]
    if ctx.json:
        ctx.emit(
            {
                "results": [
                    {"line": line, "job": to_dict(job)}
                    if job is not None
                    else {"line": line, "error": {"code": err.code.name, "message": err.message}}
                    for line, job, err in results
                ]
            }
        )
    else:
        rows = [
            (str(line), Text(job.job_id), render.state_text(job.state))
            if job is not None
            else (str(line), Text("-"), Text(f"{err.code.name}: {err.message}", style="red"))
            for line, job, err in results
        ]
        ctx.console.print(render.grid_table(("line", "job_id", "state"), rows, wrap=("state",)))
    refused = [line for line, job, _ in results if job is None]
    if refused:
        raise CliError(
            f"{len(refused)} of {len(results)} jobs refused (lines {', '.join(map(str, refused))})"
        )


def _job_lines(text: str) -> list[tuple[int, Any]]:
    """(line number, job) for each non-blank line; a bad line is a usage error naming it."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            job = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            raise usage(f"line {n}: not valid JSON ({exc})") from exc
        if not isinstance(job, dict) or not isinstance(job.get("service"), str):
            raise usage(f'line {n}: must be a JSON object with a "service" string')
        try:
            out.append((n, batch_item(job, f"line {n}")))
        except InvalidArgument as exc:
            raise usage(exc.message) from None
    if not out:
        raise usage("FILE: no jobs in it")
    return out


@command(app, "get")
def get(ctx: Ctx, job_id: JobId) -> None:
    """Show a job."""
    job = ctx.client.get_job(job_id)
    if ctx.json:
        ctx.emit(job)
    else:
        ctx.console.print(render.job_panel(job))


@command(app, "watch")
def watch(ctx: Ctx, job_id: JobId) -> None:
    """Follow a job until it ends (exit 0 when COMPLETED, 1 otherwise)."""
    follow(ctx, job_id)


@command(app, "cancel")
def cancel(
    ctx: Ctx,
    job_id: JobId,
    reason: Annotated[str, typer.Option("--reason", help="Recorded with the cancel.")] = "",
) -> None:
    """Cancel a queued, assigned or running job."""
    job = ctx.client.cancel_job(job_id, reason)
    if ctx.json:
        ctx.emit(job)
    else:
        ctx.console.print(render.job_panel(job))


@command(app, "list")
def list_jobs(
    ctx: Ctx,
    state: Annotated[
        str | None, typer.Option("--state", help="queued, assigned, running, completed, ...")
    ] = None,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=500)] = 50,
    page_token: Annotated[str, typer.Option("--page-token")] = "",
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
) -> None:
    """List your jobs, newest first."""
    if all_pages:
        jobs, token = list(ctx.client.iter_jobs(state, page_size)), ""
    else:
        jobs, token = ctx.client.list_jobs(state, page_size, page_token)
    if ctx.json:
        ctx.emit({"jobs": [to_dict(j) for j in jobs], "next_page_token": token})
        return
    ctx.console.print(render.jobs_table(jobs))
    if token:
        ctx.console.print(Text(f"more: --page-token {token}", style="dim"))


def _job_error(job_id: str, state: int, error: job_pb.JobError) -> str:
    detail = f": {error.code}: {error.message}" if error.code else ""
    return f"job {job_id} {render.state_name(state)}{detail}"


def _save(result: job_pb.JobResult, output: Path) -> dict[str, Any]:
    """Write an inline result as JSON, or download an artifact checking sha256 and size."""
    if result.WhichOneof("kind") == "inline":
        value = json_format.MessageToDict(result.inline)
        download.write_file(
            output, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode()
        )
        return {"path": str(output)}
    a = result.artifact
    size = download.fetch(a.url, output, sha256=a.sha256, size=a.size_bytes)
    return {"path": str(output), "size_bytes": size, "sha256_verified": True}


@command(app, "result")
def result(
    ctx: Ctx,
    job_id: JobId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result (download an artifact) here."),
    ] = None,
) -> None:
    """Print a finished job's result; with --output, save it (artifacts are sha256-checked)."""
    resp = ctx.client.get_result(job_id)
    if not resp.HasField("result"):  # not finished, or finished without a result
        if ctx.json:
            ctx.emit(resp)
        if resp.state in TERMINAL_STATES:
            raise CliError(_job_error(job_id, resp.state, resp.error))
        state = render.state_name(resp.state)
        raise CliError(f"job {job_id} has no result yet (state {state}); try `aitbc jobs watch`")
    saved = _save(resp.result, output) if output is not None else None
    if ctx.json:
        ctx.emit({**to_dict(resp), **({"saved": saved} if saved else {})})
    elif saved is not None:
        checked = " (sha256 verified)" if "sha256_verified" in saved else ""
        typer.echo(f"wrote {output}{checked}")
    elif resp.result.WhichOneof("kind") == "inline":
        value = json_format.MessageToDict(resp.result.inline)
        typer.echo(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        a = resp.result.artifact
        typer.echo(f"url           {a.url}")
        typer.echo(f"sha256        {a.sha256}")
        typer.echo(f"size          {a.size_bytes} bytes")
        typer.echo(f"content_type  {a.content_type or '-'}")
