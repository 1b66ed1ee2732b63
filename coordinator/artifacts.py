"""Content-addressed artifact storage under the data dir: <dir>/<sha256> plus its content type."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from core import errors

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CONTENT_TYPE_RE = re.compile(r"^[\w.+-]+/[\w.+-]+(; ?[\w.+-]+=[\w.+-]+)*$")


class ArtifactStore:
    def __init__(self, directory: Path, *, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def _put(self, data: bytes, content_type: str) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.directory / sha
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".upload-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        (self.directory / f"{sha}.type").write_text(content_type)
        return sha

    async def put(self, data: bytes, content_type: str) -> str:
        if len(data) > self.max_bytes:
            raise errors.InvalidArgument.field(
                "body.data", f"{len(data)} bytes exceeds the artifact limit of {self.max_bytes}"
            )
        content_type = content_type or "application/octet-stream"
        if not CONTENT_TYPE_RE.match(content_type) or len(content_type) > 128:
            raise errors.InvalidArgument.field(
                "body.content_type", f"invalid content type {content_type[:64]!r}"
            )
        return await asyncio.to_thread(self._put, data, content_type)

    def _get(self, sha: str) -> tuple[bytes, str] | None:
        path = self.directory / sha
        if not path.exists():
            return None
        type_file = self.directory / f"{sha}.type"
        content_type = type_file.read_text() if type_file.exists() else "application/octet-stream"
        return path.read_bytes(), content_type

    async def get(self, sha: str) -> tuple[bytes, str]:
        if not SHA256_RE.match(sha):
            raise errors.InvalidArgument.field("sha256", "expected 64 lowercase hex characters")
        found = await asyncio.to_thread(self._get, sha)
        if found is None:
            raise errors.NotFound("artifact", sha)
        return found
