"""Shared CLI plumbing: connection options, JSON/Rich output, one-line errors and exit codes."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import httpx
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from client.errors import SdkError
from client.sdk import DEFAULT_ENDPOINT, Client
from core.errors import AitbcError

# Exit codes: 0 success, 1 the API (or the job, or a check) said no, 2 bad usage or input.
EXIT_API, EXIT_USAGE = 1, 2


class CliError(Exception):
    """A failure the command explains in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_API):
        super().__init__(message)
        self.exit_code = code


def usage(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


def to_dict(msg: Message) -> dict[str, Any]:
    """Proto3 JSON with proto field names and unpopulated fields printed (a stable shape)."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass
class Ctx:
    """What a command gets: the connection options, a lazily opened Client and the output."""

    endpoint: str
    api_key: str | None
    tls: bool
    timeout_s: float
    json: bool
    _client: Client | None = field(default=None, repr=False)
    _console: Console | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.endpoint, self.api_key, timeout_s=self.timeout_s, tls=self.tls
            )
        return self._client

    @property
    def console(self) -> Console:
        # Made per command, not at import: the runner (or a pipe) owns sys.stdout by now.
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    def emit(self, value: Message | dict[str, Any] | list[Any]) -> None:
        """One JSON document on one line of stdout."""
        data = to_dict(value) if isinstance(value, Message) else value
        typer.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"aitbc: error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Known failures become one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except CliError as exc:
        _fail(str(exc), exc.exit_code)
    except SdkError as exc:  # the coordinator (or the channel to it) refused
        _fail(str(exc), EXIT_API)
    except AitbcError as exc:  # refused locally before sending: bad input
        _fail(str(exc), EXIT_USAGE)
    except httpx.HTTPError as exc:
        _fail(f"download failed: {exc}", EXIT_API)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


_COMMON = [
    inspect.Parameter(
        "endpoint",
        inspect.Parameter.KEYWORD_ONLY,
        default=DEFAULT_ENDPOINT,
        annotation=Annotated[
            str,
            typer.Option(
                "--endpoint",
                envvar="AITBC_ENDPOINT",
                help="Coordinator gRPC address, host:port (https:// for TLS).",
                rich_help_panel="Connection",
            ),
        ],
    ),
    inspect.Parameter(
        "api_key",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--api-key",
                envvar="AITBC_API_KEY",
                help="API key sent as x-api-key.",
                show_default=False,
                rich_help_panel="Connection",
            ),
        ],
    ),
    inspect.Parameter(
        "tls",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--tls", envvar="AITBC_TLS", help="Use TLS.", rich_help_panel="Connection"
            ),
        ],
    ),
    inspect.Parameter(
        "timeout_s",
        inspect.Parameter.KEYWORD_ONLY,
        default=30.0,
        annotation=Annotated[
            float,
            typer.Option(
                "--timeout",
                envvar="AITBC_TIMEOUT",
                min=0.001,
                help="Seconds to wait for each call.",
                rich_help_panel="Connection",
            ),
        ],
    ),
    inspect.Parameter(
        "json_out",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--json", help="Machine-readable JSON on stdout (proto names).")
        ],
    ),
]


def command(group: typer.Typer, name: str, **kw: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register `fn(ctx, ...)` as `group name`, adding the connection options and --json.

    The wrapper owns the Ctx (and its channel) and turns known failures into one line on
    stderr with exit 1 (API) or 2 (usage).
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        own = list(sig.parameters.values())[1:]  # drop ctx

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            ctx = Ctx(
                endpoint=kwargs.pop("endpoint"),
                api_key=kwargs.pop("api_key"),
                tls=kwargs.pop("tls"),
                timeout_s=kwargs.pop("timeout_s"),
                json=kwargs.pop("json_out"),
            )
            try:
                with one_line_errors():
                    return fn(ctx, **kwargs)
            finally:
                ctx.close()

        wrapper.__signature__ = sig.replace(parameters=[*own, *_COMMON])  # type: ignore[attr-defined]
        group.command(name, **kw)(wrapper)
        return fn

    return deco


def read_input(path: str, what: str) -> bytes:
    """The bytes of an input file ("-" for stdin); a read error is a usage error."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise usage(f"{what}: cannot read {path} ({exc.strerror})") from exc
