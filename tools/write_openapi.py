"""Write contracts/openapi.json from the product's services; `--check` compares instead.

Services are discovered from every generated `*_pb2` module under gen/aitbc that defines one.
Descriptions come from the proto comments: the .proto files under proto/ are compiled once more
with source info (grpc_tools.protoc, in-process) because generated modules drop comments.
The output is deterministic: sorted keys, descriptor order for lists, a trailing newline.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen"
PROTO = ROOT / "proto"
DEFAULT_OUTPUT = ROOT / "contracts" / "openapi.json"
TITLE = "AITBC API"
STALE = "contracts/openapi.json is stale: run make proto"

for path in (ROOT, GEN):  # runnable as a script from anywhere
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def discover_services() -> list:
    """Every service defined in a gen/aitbc/**/*_pb2.py module, sorted by full name."""
    services = []
    for file in sorted((GEN / "aitbc").rglob("*_pb2.py")):
        module = ".".join(file.relative_to(GEN).with_suffix("").parts)
        services.extend(importlib.import_module(module).DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda s: s.full_name)


def source_info():
    """A FileDescriptorSet of proto/ with comments (source_code_info)."""
    import grpc_tools
    from google.protobuf.descriptor_pb2 import FileDescriptorSet
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "proto.binpb")
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{ROOT / 'third_party' / 'googleapis'}",
            f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc could not compile proto/ (see the messages above)")
        return FileDescriptorSet.FromString(Path(out).read_bytes())


def render() -> str:
    import json
    from importlib.metadata import version

    from core.gateway import build_openapi, compile_routes

    table = compile_routes(discover_services())
    doc = build_openapi(table, title=TITLE, version=version("aitbc"), source_info=source_info())
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write/compare")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), "committed", "generated", lineterm="", n=1
            )
            shown = list(diff)
            print(STALE, file=sys.stderr)
            print("\n".join(shown[:40] + (["..."] if len(shown) > 40 else [])), file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
