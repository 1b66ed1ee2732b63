"""`aitbc-miner` entry point: the miner agent is not built yet, and says so."""

import sys


def main() -> None:
    print(
        "aitbc-miner: the miner agent (executors, capability probe) is not built yet.\n"
        "What exists today: aitbc-coordinator (gRPC + REST). See README.md.",
        file=sys.stderr,
    )
    raise SystemExit(2)
