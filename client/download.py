"""Writing outputs safely: artifact downloads checked against their sha256 and size."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import httpx

from client.cli_common import CliError, usage

CHUNK = 1 << 16


def _temp_beside(path: Path) -> tuple[int, Path]:
    # Written next to the target and renamed over it: a reader never sees a partial file.
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise usage(f"--output: directory {directory} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    return fd, Path(name)


def write_file(path: Path, data: bytes) -> None:
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fetch(url: str, path: Path, *, sha256: str, size: int, timeout_s: float = 60) -> int:
    """Download `url` to `path`; the file appears only if its sha256 (and size) match."""
    fd, tmp = _temp_beside(path)
    digest, got = hashlib.sha256(), 0
    try:
        with (
            os.fdopen(fd, "wb") as fh,
            httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as resp,
        ):
            if resp.status_code != 200:
                raise CliError(f"download of {url} failed: HTTP {resp.status_code}")
            for chunk in resp.iter_bytes(CHUNK):
                got += len(chunk)
                if size and got > size:
                    raise CliError(f"download of {url}: more than the announced {size} bytes")
                digest.update(chunk)
                fh.write(chunk)
        if size and got != size:
            raise CliError(f"download of {url}: got {got} bytes, expected {size}")
        if digest.hexdigest() != sha256.lower():
            raise CliError(
                f"download of {url}: sha256 mismatch (expected {sha256}, got {digest.hexdigest()})"
            )
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return got
