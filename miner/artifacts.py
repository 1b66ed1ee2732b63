"""Artifacts: content-addressed stores for job outputs and a guarded downloader for inputs."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from miner.executors.base import ExecutionError

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArtifactInfo:
    """Where a stored output is and what it is (mirrors coordinator.v1.ArtifactRef)."""

    url: str
    size_bytes: int
    sha256: str
    content_type: str


class ArtifactStore(Protocol):
    async def put(self, path: Path, content_type: str) -> ArtifactInfo: ...


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class LocalArtifactStore:
    """Stores files under `directory/<sha256>`; the URL is `base_url/<sha256>`."""

    def __init__(self, directory: Path, base_url: str | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.base_url = (base_url or self.directory.resolve().as_uri()).rstrip("/")

    def path_for(self, sha256: str) -> Path:
        return self.directory / sha256

    def _store(self, path: Path) -> tuple[str, int]:
        # Hash while copying (one read), then rename: readers never see a partial file.
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            os.replace(tmp, self.path_for(digest.hexdigest()))
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest(), size

    async def put(self, path: Path, content_type: str) -> ArtifactInfo:
        sha256, size = await asyncio.to_thread(self._store, Path(path))
        return ArtifactInfo(f"{self.base_url}/{sha256}", size, sha256, content_type)


class HttpArtifactStore:
    """PUTs each file (chunked) to `upload_url`, which may contain "{sha256}".

    The server answers `{"url": ..., "sha256": ..., "size_bytes": ...}`; a sha256 or size
    that differs from the local file's is an error.
    """

    def __init__(self, upload_url: str, api_key: str = "", *, timeout_s: float = 600.0):
        self.upload_url = upload_url
        self.api_key = api_key
        self.timeout_s = timeout_s

    async def put(self, path: Path, content_type: str) -> ArtifactInfo:
        path = Path(path)
        sha256, size = await asyncio.to_thread(_hash_file, path)
        headers = {"Content-Type": content_type, "X-Content-SHA256": sha256}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.upload_url.replace("{sha256}", sha256)
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
                resp = await client.put(url, content=_read_chunks(path), headers=headers)
        except httpx.HTTPError as exc:
            raise ExecutionError(
                "artifact_upload_failed", f"upload to {url} failed: {exc!r}", True
            ) from exc
        if resp.status_code >= 400:
            retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
            raise ExecutionError(
                "artifact_upload_failed",
                f"upload to {url} answered {resp.status_code}: {resp.text[:300]}",
                retryable,
            )
        try:
            body = resp.json()
            info = ArtifactInfo(
                str(body["url"]), int(body["size_bytes"]), str(body["sha256"]), content_type
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ExecutionError(
                "artifact_upload_failed", f"upload answer is not the expected JSON: {exc!r}", True
            ) from exc
        if info.sha256 != sha256 or info.size_bytes != size:
            raise ExecutionError(
                "artifact_upload_failed",
                f"upload stored sha256={info.sha256} size={info.size_bytes}, "
                f"sent sha256={sha256} size={size}",
                True,
            )
        return info


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            yield chunk


# ---- guarded downloads -------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size_bytes: int
    sha256: str
    content_type: str


def _refused_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: Python counts link-local, 0.0.0.0/8 and 240/4 as "private" too.
    for attr in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{attr}"):
            return attr.replace("_", "-")
    # Catches the remaining special-purpose ranges (e.g. 100.64.0.0/10 shared address space).
    return None if ip.is_global else "non-global"


async def check_host(url: httpx.URL, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to any loopback/private/link-local/... address."""
    if allow_private:
        return
    host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ExecutionError("download_failed", f"cannot resolve {host!r}: {exc}", True) from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if reason := _refused_reason(ip):
            raise ExecutionError(
                "download_refused", f"{host!r} resolves to {reason} address {ip}", False
            )


def _check_peer(resp: httpx.Response, allow_private: bool) -> None:
    # The connection may have gone to another address than the one checked (DNS rebinding):
    # check the peer actually connected to before reading any of the body.
    if allow_private:
        return
    stream = resp.extensions.get("network_stream")
    addr = stream.get_extra_info("server_addr") if stream is not None else None
    if not addr:
        raise ExecutionError("download_refused", "cannot verify the server's address", False)
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if reason := _refused_reason(ip):
        raise ExecutionError("download_refused", f"connected to {reason} address {ip}", False)


async def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    allow_private: bool = False,
    expected_sha256: str | None = None,
    timeout_s: float = 60.0,
    max_redirects: int = 5,
) -> Downloaded:
    """GET `url` (http/https only) into `dest`, at most `max_bytes`; verify sha256 if given.

    Every redirect hop is checked like the first URL. A partial file never stays behind.
    `timeout_s` bounds connecting and each read, not the whole transfer.
    """
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ExecutionError("bad_params", f"url: not a valid URL: {url!r}", False) from exc
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
            for _ in range(max_redirects + 1):
                if current.scheme not in ("http", "https") or not current.host:
                    raise ExecutionError(
                        "bad_params", f"url: only http(s) URLs with a host: {current}", False
                    )
                await check_host(current, allow_private)
                async with client.stream("GET", current) as resp:
                    _check_peer(resp, allow_private)
                    if resp.is_redirect and "location" in resp.headers:
                        current = current.join(resp.headers["location"])
                        continue
                    _check_status(resp, current)
                    sha256, size = await _save(resp, part, max_bytes)
                    content_type = resp.headers.get("content-type", "application/octet-stream")
                    break
            else:
                raise ExecutionError("download_failed", f"more than {max_redirects} redirects")
        if expected_sha256 and sha256 != expected_sha256.lower():
            raise ExecutionError(
                "checksum_mismatch", f"sha256 is {sha256}, expected {expected_sha256}", False
            )
        os.replace(part, dest)
        return Downloaded(dest, size, sha256, content_type)
    except httpx.HTTPError as exc:
        raise ExecutionError("download_failed", f"GET {current} failed: {exc!r}", True) from exc
    finally:
        part.unlink(missing_ok=True)


def _check_status(resp: httpx.Response, url: httpx.URL) -> None:
    if resp.status_code >= 400:
        # A 4xx will answer the same on every try; a 5xx may be transient.
        retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
        raise ExecutionError("download_failed", f"GET {url} answered {resp.status_code}", retryable)


async def _save(resp: httpx.Response, part: Path, max_bytes: int) -> tuple[str, int]:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ExecutionError("input_too_large", f"{declared} bytes is over {max_bytes}", False)
    digest, size = hashlib.sha256(), 0
    with part.open("wb") as out:
        async for chunk in resp.aiter_bytes(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise ExecutionError("input_too_large", f"more than {max_bytes} bytes", False)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size
