"""`aitbc`: the client command line (jobs, receipts, miners, admin) over the SDK.

Other modules add command groups to `app` (`app.add_typer(...)`, `app.command(...)`) before
`main()` runs it.
"""

import typer

from client import cli_admin, cli_jobs, cli_receipts
from client.devnet import devnet_command

app = typer.Typer(
    name="aitbc",
    help="AITBC compute network client. Endpoint and key: --endpoint/--api-key or "
    "AITBC_ENDPOINT/AITBC_API_KEY.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback (only for bugs: known failures are one line) must not print the API key.
    pretty_exceptions_show_locals=False,
)
app.add_typer(cli_jobs.app, name="jobs")
app.add_typer(cli_receipts.app, name="receipt")
app.add_typer(cli_admin.miners_app, name="miners")
app.add_typer(cli_admin.admin_app, name="admin")
app.command("devnet")(devnet_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
