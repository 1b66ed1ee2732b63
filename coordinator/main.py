"""`aitbc-coordinator` entry point (being built: prints what exists)."""

import sys


def main() -> None:
    print(
        "aitbc-coordinator: the coordinator service is being built; nothing serves yet.",
        file=sys.stderr,
    )
    raise SystemExit(2)
