"""`aitbc-miner`: run the miner agent (default), or `probe` what this machine offers.

SIGTERM/SIGINT drains (finish held jobs, take nothing new, exit 0); a second one cancels the
running jobs (their processes are killed, the coordinator is told) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from core.config import ConfigError, load_config, render_env_example
from core.logging import setup_logging
from miner.agent import FatalError, MinerAgent
from miner.config import MinerConfig
from miner.probe import format_probe, probe

log = logging.getLogger("aitbc.miner")


async def serve(cfg: MinerConfig) -> int:
    agent = MinerAgent(cfg)
    loop = asyncio.get_running_loop()
    signals = 0
    stopping: list[asyncio.Task[None]] = []  # held: the loop keeps only weak references

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("signal received: draining (send it again to cancel running jobs)")
            agent.drain()
        else:
            log.warning("second signal: cancelling running jobs")
            stopping.append(loop.create_task(agent.stop(cancel=True)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    print(
        f"miner running: {len(agent.caps.services)} service(s), {cfg.slots} slot(s), coordinator {cfg.coordinator}",
        flush=True,
    )
    try:
        await agent.run()
    except FatalError as exc:
        print(f"aitbc-miner: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aitbc-miner", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=("run", "probe"))
    parser.add_argument("--config", type=Path, help="an env-format file of AITBC_MINER_* settings")
    parser.add_argument(
        "--print-env-example", action="store_true", help="print every setting with its default"
    )
    args = parser.parse_args(argv)
    if args.print_env_example:
        print(render_env_example(MinerConfig, prefix="AITBC_MINER_"), end="")
        return
    if args.config is not None and not args.config.is_file():
        print(f"aitbc-miner: --config {args.config}: no such file", file=sys.stderr)
        raise SystemExit(2)
    try:
        cfg = load_config(MinerConfig, prefix="AITBC_MINER_", env_file=args.config or ".env")
    except (ConfigError, ValueError) as exc:
        print(f"aitbc-miner: bad configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "probe":
        print(format_probe(probe(cfg.executor_config())))
        return
    if not cfg.api_key:
        print("aitbc-miner: AITBC_MINER_API_KEY is required to run", file=sys.stderr)
        raise SystemExit(2)
    setup_logging("INFO", "text")
    raise SystemExit(asyncio.run(serve(cfg)))


if __name__ == "__main__":
    main()
