"""Copy google/api/{annotations,http,httpbody}.proto from the pinned googleapis-common-protos wheel.

`--check` compares instead of copying and exits 1 on drift (CI runs it).
"""

import argparse
import os
import sys
from pathlib import Path

from google.api import annotations_pb2

FILES = ("annotations.proto", "http.proto", "httpbody.proto")
DEST = Path(__file__).resolve().parent.parent / "third_party" / "googleapis" / "google" / "api"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail on drift instead of copying")
    args = parser.parse_args()
    # google.api is a namespace package: locate it through a module inside it.
    src = Path(os.path.dirname(annotations_pb2.__file__))
    drift = []
    for name in FILES:
        wanted = (src / name).read_bytes()
        target = DEST / name
        if args.check:
            if not target.exists() or target.read_bytes() != wanted:
                drift.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wanted)
    if drift:
        print("third_party/googleapis differs from the pinned wheel:", *drift, sep="\n  ")
        print("run: make proto", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
