"""`aitbc-poolhub` entry point: the pool hub is not built yet, and says so."""

import sys


def main() -> None:
    print(
        "aitbc-poolhub: the pool hub (miner directory, scoring, ranking) is not built yet.\n"
        "What exists today: aitbc-coordinator (gRPC + REST). See README.md.",
        file=sys.stderr,
    )
    raise SystemExit(2)
