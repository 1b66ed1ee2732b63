"""The executor interface: one service name, one async `run(params, ctx) -> ExecResult`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # miner.artifacts imports this module; only types flow back.
    from miner.artifacts import ArtifactInfo, ArtifactStore


class ExecutionError(Exception):
    """A job failed. `code` is machine-readable; `retryable` says if another try may succeed.

    Codes used by the executors: bad_params, unsupported_service, backend_not_configured,
    backend_unavailable, backend_timeout, backend_error, download_refused, download_failed,
    input_too_large, checksum_mismatch, execution_failed, artifact_upload_failed, internal.
    This is the miner's job-failure report (sent as JobFailure code/message/retryable), not an
    RPC error, so it does not derive from core.errors.
    """

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"ExecutionError({self.code!r}, {self.message!r}, retryable={self.retryable})"


def bad_params(field: str, what: str) -> ExecutionError:
    """The error for an invalid parameter; the message starts with the field name."""
    return ExecutionError("bad_params", f"{field}: {what}", retryable=False)


class ExecContext:
    """What one job run gets besides its parameters.

    `progress(fraction 0..1, message)` is cheap: call it as often as you like from the event
    loop. `workdir` is a fresh directory for this run only, made when first asked for (a job
    that never needs one costs no directory) and removed by the runner afterwards.
    """

    def __init__(
        self,
        job_id: str,
        workdir: Path | Callable[[], Path],
        progress: Callable[[float, str], None],
        artifacts: ArtifactStore,
    ):
        self.job_id = job_id
        self._workdir = workdir
        self.progress = progress
        self.artifacts = artifacts

    @property
    def workdir(self) -> Path:
        if not isinstance(self._workdir, Path):
            self._workdir = self._workdir()
        return self._workdir

    @property
    def made_workdir(self) -> Path | None:
        """The directory if it was made (or given), else None."""
        return self._workdir if isinstance(self._workdir, Path) else None


@dataclass
class ExecResult:
    """A job's result: a small JSON value inline, or an artifact (never both)."""

    inline: Any | None = None
    artifact: ArtifactInfo | None = None
    # Informational only (e.g. seconds of media, tokens); the coordinator measures time itself.
    units_hint: float | None = None

    def sha256(self) -> str:
        """Hex sha256 of the result: the artifact's bytes, or the canonical JSON of `inline`."""
        if self.artifact is not None:
            return self.artifact.sha256
        return hashlib.sha256(canonical_json(self.inline)).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the bytes the inline sha256 is taken over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


class Executor(Protocol):
    """Runs jobs of one service. Must kill its child processes when the run is cancelled."""

    service: str

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult: ...
