"""tools/check_contracts.py fails when it should: run on copies of the contract files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = ("proto", "third_party", "gen", "buf.yaml", "buf.gen.yaml", "tools", "contracts")
JOB_SERVICE = Path("proto/aitbc/coordinator/v1/job_service.proto")
GET_JOB_REQUEST = "message GetJobRequest {\n  string job_id = 1;\n}\n"
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    not (VENV_BIN / "buf").exists(), reason="buf is not installed in the venv (make setup)"
)


def _copy(part: str, dst: Path) -> None:
    src = REPO / part
    if src.is_dir():
        shutil.copytree(src, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(src, dst / part)


def _export(dst: Path) -> None:
    """The contract files as committed (git HEAD), so that a colleague's half-done proto
    edit in the working tree cannot make these tests flaky (a plain copy where there is no
    git); tools/ from the working tree, since the script itself is what is under test."""
    contracts = [p for p in PARTS if p != "tools"]
    if (REPO / ".git").exists() and shutil.which("git"):
        archive = dst.parent / f"{dst.name}.tar"
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "archive",
                "--format=tar",
                "-o",
                str(archive),
                "HEAD",
                *contracts,
            ],
            check=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(dst, filter="data")
        archive.unlink()
    else:
        for part in contracts:
            _copy(part, dst)
    _copy("tools", dst)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contracts") / "repo"
    root.mkdir()
    _export(root)
    assert GET_JOB_REQUEST in (root / JOB_SERVICE).read_text()
    return root


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(pristine, root)
    return root


def _load(root: Path) -> ModuleType:
    """Import the copied script: its ROOT is the copy (resolved from its own location)."""
    name = f"check_contracts_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, root / "tools" / "check_contracts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ROOT == root.resolve()
    return module


def _edit(root: Path, rel: Path, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


def test_untouched_copy_passes_without_git_on_path(pristine: Path):
    # The whole script as CI runs it, with PATH holding only the venv (no git binary) and
    # the copy outside any git checkout: the HEAD~1 comparison is skipped, not a crash.
    assert shutil.which("git", path=str(VENV_BIN)) is None
    env = {**os.environ, "PATH": str(VENV_BIN)}
    proc = subprocess.run(
        [sys.executable, str(pristine / "tools" / "check_contracts.py")],
        cwd=pristine,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("googleapis copy", "buf lint", "buf format", "buf breaking", "generated code"):
        assert f"ok   {name}" in proc.stdout
    assert "note: HEAD~1 comparison skipped: not a git checkout" in proc.stdout


def test_added_field_without_regenerating_fails_generated_check(copy: Path):
    generated = copy / "gen/aitbc/coordinator/v1/job_service_pb2.py"
    before = generated.read_bytes()
    _edit(
        copy,
        JOB_SERVICE,
        GET_JOB_REQUEST,
        "message GetJobRequest {\n  string job_id = 1;\n  bool include_attempts = 2;\n}\n",
    )
    check = _load(copy)
    problem = check.check_generated()
    assert problem is not None and problem.startswith("gen/ is stale")
    assert "differs: job_service_pb2.py" in problem.replace("aitbc/coordinator/v1/", "")
    # The committed gen/ is untouched by the check (it generates into a temporary dir).
    assert generated.read_bytes() == before


def test_renamed_field_fails_breaking_against_baseline(copy: Path):
    _edit(copy, JOB_SERVICE, GET_JOB_REQUEST, "message GetJobRequest {\n  string id = 1;\n}\n")
    check = _load(copy)
    problem = check.check_breaking()
    assert problem is not None and "against contracts/baseline.binpb" in problem
    assert "GetJobRequest" in problem and "job_id" in problem
    # No .git in the copy (while git itself is on PATH): skipped with a note, no crash.
    assert check.NOTES == ["HEAD~1 comparison skipped: not a git checkout"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")
def test_breaking_change_against_previous_commit_fails(copy: Path):
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=copy,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "contracts")
    _edit(copy, JOB_SERVICE, GET_JOB_REQUEST, "message GetJobRequest {\n  string id = 1;\n}\n")
    git("commit", "-q", "-am", "rename")
    check = _load(copy)
    problem = check.check_breaking()
    assert problem is not None and "against HEAD~1:" in problem
    assert check.NOTES == []


def test_corrupted_googleapis_copy_fails(copy: Path):
    http = copy / "third_party/googleapis/google/api/http.proto"
    http.write_text(http.read_text().replace("message HttpRule {", "message HttpRule {\n  // x", 1))
    check = _load(copy)
    problem = check.check_googleapis()
    assert problem is not None
    assert "third_party/googleapis differs from the pinned wheel" in problem
    assert "http.proto" in problem


def test_badly_formatted_proto_fails_format_check(copy: Path):
    _edit(
        copy,
        JOB_SERVICE,
        GET_JOB_REQUEST,
        "message GetJobRequest{string job_id=1;}\n",
    )
    check = _load(copy)
    problem = check.check_format()
    assert problem is not None and problem.startswith("buf format (run `buf format -w`)")
    assert "job_service.proto" in problem


def test_missing_tool_is_reported_not_raised(copy: Path):
    check = _load(copy)
    rc, out = check.run("definitely-not-a-real-tool-xyz", "--version")
    assert rc == 127 and "command not found" in out
