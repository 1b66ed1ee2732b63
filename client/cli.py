"""`aitbc` entry point: the client CLI is not built yet, and says so."""

import sys


def main() -> None:
    print(
        "aitbc: the client CLI is not built yet.\n"
        "What exists today: aitbc-coordinator (gRPC + REST). See README.md.",
        file=sys.stderr,
    )
    raise SystemExit(2)
