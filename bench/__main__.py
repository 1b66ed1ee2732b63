"""`python -m bench` lists the benchmarks; `python -m bench NAME [args...]` runs one.

A benchmark is `bench/<name>/run.py`, or in a folder without run.py each module that runs as
a script (`<folder>.<module>`), or a script directly under bench/. Found by reading files
(nothing is imported until one runs).
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _is_script(path: Path) -> tuple[bool, str]:
    tree = ast.parse(path.read_text())
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    main = any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    )
    return main, doc[0] if doc else ""


def discover() -> dict[str, tuple[str, str]]:
    """name -> (module, one-line description)."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        main, doc = _is_script(path)
        if main:
            found[path.stem] = (f"bench.{path.stem}", doc)
    for folder in sorted(
        p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    ):
        run = folder / "run.py"
        candidates = [run] if run.exists() else sorted(folder.glob("[!_]*.py"))
        for path in candidates:
            main, doc = _is_script(path)
            if main:
                name = folder.name if path == run else f"{folder.name}.{path.stem}"
                found[name] = (f"bench.{folder.name}.{path.stem}", doc)
    return found


def main(argv: list[str]) -> int:
    found = discover()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m bench NAME [args...]   (NAME --help for its options)\n")
        width = max(map(len, found), default=0)
        for name, (module, doc) in found.items():
            print(f"  {name:<{width}}  {doc or module}")
        return 0
    name = argv[0]
    if name not in found:
        print(f"bench: unknown benchmark {name!r}; available: {', '.join(found)}", file=sys.stderr)
        return 2
    module = found[name][0]
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
