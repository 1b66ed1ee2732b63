"""`aitbc-coordinator`: serve the coordinator (gRPC + REST gateway) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import sys

from coordinator.app import CoordinatorApp
from coordinator.config import CoordinatorConfig
from core import eventloop
from core.config import ConfigError, load_config, render_env_example
from core.logging import setup_logging
from core.server import serve_until_signal

# Keys of the other components that may share one environment or .env file.
OTHER_COMPONENTS = (
    "AITBC_MINER_",
    "AITBC_POOLHUB_",
    "AITBC_CLI_",
    "AITBC_ENDPOINT",
    "AITBC_API_KEY",
)


async def serve(config: CoordinatorConfig) -> None:
    app = await CoordinatorApp(config).start()
    print(
        f"coordinator ready: gRPC {config.server.grpc_host}:{app.grpc.port}  "
        f"REST http://{config.http_host}:{app.http_port}  (docs at /docs)",
        flush=True,
    )
    await serve_until_signal(app.grpc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aitbc-coordinator", description=__doc__)
    parser.add_argument(
        "--print-env-example", action="store_true", help="print every setting with its default"
    )
    args = parser.parse_args(argv)
    if args.print_env_example:
        print(render_env_example(CoordinatorConfig), end="")
        return
    try:
        config = load_config(CoordinatorConfig, allow=OTHER_COMPONENTS)
    except (ConfigError, ValueError) as exc:
        print(f"aitbc-coordinator: bad configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.log_level, config.log_format)
    try:
        eventloop.run(serve(config), config.event_loop)
    except OSError as exc:
        print(f"aitbc-coordinator: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
