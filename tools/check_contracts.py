"""Contract checks run by CI: each prints what failed and how to fix it; exit 1 on any failure.

1. third_party/googleapis matches the pinned googleapis-common-protos wheel.
2. `buf lint` and `buf format` pass.
3. `buf breaking` passes against the committed baseline image (contracts/baseline.binpb) and,
   when git history is there, against the previous commit.
4. Regenerating gen/ from proto/ changes nothing.
5. Extra checks registered in EXTRA_CHECKS (e.g. the OpenAPI golden copy).
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "contracts" / "baseline.binpb"


# buf and the plugins it runs (`python`, protoc-gen-mypy_grpc) come from this interpreter's venv.
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
}


# Things a check skipped (e.g. no git history); printed under the check, never a failure.
NOTES: list[str] = []


def run(*cmd: str, cwd: Path = ROOT) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    except FileNotFoundError:
        return 127, f"{cmd[0]}: command not found on PATH"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _previous_commit_available() -> bool:
    """True when ROOT itself is a git checkout (not a copy inside some other repository)
    and has a parent commit (a --depth 1 clone has none)."""
    if not (ROOT / ".git").exists():
        NOTES.append("HEAD~1 comparison skipped: not a git checkout")
        return False
    rc, top = run("git", "rev-parse", "--show-toplevel")
    if rc != 0:
        NOTES.append(f"HEAD~1 comparison skipped: {top or 'git failed'}")
        return False
    if Path(top).resolve() != ROOT:
        NOTES.append(f"HEAD~1 comparison skipped: the checkout's top level is {top}, not {ROOT}")
        return False
    rc, _ = run("git", "rev-parse", "--verify", "--quiet", "HEAD~1")
    if rc != 0:
        NOTES.append("HEAD~1 comparison skipped: no previous commit (shallow clone?)")
        return False
    return True


def check_googleapis() -> str | None:
    rc, out = run(sys.executable, "tools/sync_googleapis.py", "--check")
    return None if rc == 0 else out


def check_lint() -> str | None:
    rc, out = run("buf", "lint")
    return None if rc == 0 else f"buf lint:\n{out}"


def check_format() -> str | None:
    rc, out = run("buf", "format", "-d", "--exit-code")
    return None if rc == 0 else f"buf format (run `buf format -w`):\n{out}"


def check_breaking() -> str | None:
    problems = []
    if BASELINE.exists():
        rc, out = run("buf", "breaking", "proto", "--against", str(BASELINE))
        if rc != 0:
            problems.append(f"against {BASELINE.relative_to(ROOT)}:\n{out}")
    else:
        problems.append(f"missing baseline image {BASELINE.relative_to(ROOT)}")
    if _previous_commit_available():
        rc, out = run("buf", "breaking", "proto", "--against", ".git#ref=HEAD~1,subdir=proto")
        # The previous commit may predate proto/ (nothing to compare): only real breaks count.
        if rc != 0 and "had no .proto files" not in out and "does not exist" not in out:
            problems.append(f"against HEAD~1:\n{out}")
    return None if not problems else "buf breaking " + "\n".join(problems)


def _diff_trees(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [f"only in committed gen/: {n}" for n in cmp.left_only]
    out += [f"missing from gen/: {n}" for n in cmp.right_only]
    out += [f"differs: {n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += [f"{sub}/{line}" for line in _diff_trees(a / sub, b / sub)]
    return out


def check_generated() -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        rc, out = run("buf", "generate", "--output", tmp)
        if rc != 0:
            return f"buf generate failed:\n{out}"
        diff = _diff_trees(ROOT / "gen", Path(tmp) / "gen")
    return None if not diff else "gen/ is stale (run `make proto`):\n  " + "\n  ".join(diff)


def check_openapi() -> str | None:
    """buf does not see google.api.http: the committed OpenAPI copy shows every REST change."""
    rc, out = run(sys.executable, "tools/write_openapi.py", "--check")
    return None if rc == 0 else out


EXTRA_CHECKS: list[tuple[str, Callable[[], str | None]]] = [("openapi copy", check_openapi)]

CHECKS: list[tuple[str, Callable[[], str | None]]] = [
    ("googleapis copy", check_googleapis),
    ("buf lint", check_lint),
    ("buf format", check_format),
    ("buf breaking", check_breaking),
    ("generated code", check_generated),
]


def main() -> int:
    failed = 0
    for name, check in CHECKS + EXTRA_CHECKS:
        NOTES.clear()
        problem = check()
        print(f"{'ok  ' if problem is None else 'FAIL'} {name}")
        for note in NOTES:
            print(f"     note: {note}")
        if problem:
            failed += 1
            print("     " + problem.replace("\n", "\n     "))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
