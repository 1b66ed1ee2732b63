"""`aitbc miners` and `aitbc admin`: operator views (admin key)."""

from typing import Annotated

import typer

from client import render
from client.cli_common import Ctx, command, to_dict

miners_app = typer.Typer(help="Connected and known miners (admin key).", no_args_is_help=True)
admin_app = typer.Typer(help="Operator views (admin key).", no_args_is_help=True)


@command(miners_app, "list")
def list_miners(
    ctx: Ctx,
    status: Annotated[
        str | None, typer.Option("--status", help="online, draining or offline.")
    ] = None,
) -> None:
    """List miners with their status, load and offers."""
    miners = ctx.client.list_miners(status)
    if ctx.json:
        ctx.emit({"miners": [to_dict(m) for m in miners]})
    else:
        ctx.console.print(render.miners_table(miners))


@command(admin_app, "stats")
def stats(
    ctx: Ctx,
    window: Annotated[
        int, typer.Option("--window", min=0, help="Seconds for throughput/latency (0: 300).")
    ] = 0,
) -> None:
    """Job counts, queue depth, miners, throughput and latency."""
    resp = ctx.client.admin_stats(window)
    if ctx.json:
        ctx.emit(resp)
    else:
        ctx.console.print(render.stats_panel(resp))


@command(admin_app, "jobs")
def jobs(
    ctx: Ctx,
    state: Annotated[str | None, typer.Option("--state", help="Job state filter.")] = None,
    client_id: Annotated[str, typer.Option("--client", help="Only this client's jobs.")] = "",
    miner_id: Annotated[str, typer.Option("--miner", help="Only jobs run by this miner.")] = "",
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=500)] = 50,
    page_token: Annotated[str, typer.Option("--page-token")] = "",
) -> None:
    """Jobs of every client, newest first."""
    found, token = ctx.client.admin_list_jobs(
        state, client_id=client_id, miner_id=miner_id, page_size=page_size, page_token=page_token
    )
    if ctx.json:
        ctx.emit({"jobs": [to_dict(j) for j in found], "next_page_token": token})
        return
    ctx.console.print(render.jobs_table(found))
    if token:
        ctx.console.print(render.Text(f"more: --page-token {token}", style="dim"))
