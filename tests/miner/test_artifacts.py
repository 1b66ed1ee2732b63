"""Artifact stores (local, HTTP upload) and the guarded downloader."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from miner.artifacts import HttpArtifactStore, LocalArtifactStore, _refused_reason, download
from miner.executors import ExecutionError


async def test_local_store_is_content_addressed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store", "http://files.test/a/")
    src = tmp_path / "out.bin"
    src.write_bytes(b"hello artifact")
    info = await store.put(src, "application/octet-stream")
    digest = hashlib.sha256(b"hello artifact").hexdigest()
    assert (info.sha256, info.size_bytes) == (digest, 14)
    assert info.url == f"http://files.test/a/{digest}"
    assert store.path_for(digest).read_bytes() == b"hello artifact"
    # The same bytes from another file land on the same object; no temp files stay behind.
    other = tmp_path / "again.bin"
    other.write_bytes(b"hello artifact")
    assert (await store.put(other, "text/plain")).url == info.url
    assert [p.name for p in (tmp_path / "store").iterdir()] == [digest]


async def test_local_store_default_url_is_a_file_uri(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "s")
    src = tmp_path / "x"
    src.write_bytes(b"x")
    info = await store.put(src, "text/plain")
    assert info.url.startswith("file://") and info.url.endswith(info.sha256)


class UploadServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.answer: dict | None = None
        self.status = 201

    def app(self) -> Starlette:
        async def put(request: Request) -> Response:
            body = await request.body()
            self.requests.append((request.url.path, dict(request.headers), body))
            if self.status >= 400:
                return Response("nope", status_code=self.status)
            digest = hashlib.sha256(body).hexdigest()
            answer = self.answer or {
                "url": f"http://cas.test/{digest}",
                "sha256": digest,
                "size_bytes": len(body),
            }
            return JSONResponse(answer, status_code=self.status)

        return Starlette(routes=[Route("/v1/artifacts/{sha}", put, methods=["PUT"])])


async def test_http_store_puts_chunked_and_checks_the_answer(serve_app, tmp_path: Path) -> None:
    server = UploadServer()
    payload = bytes(range(256)) * 10_000  # 2.5 MB: several chunks
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    async with serve_app(server.app()) as url:
        store = HttpArtifactStore(f"{url}/v1/artifacts/{{sha256}}", "k3y")
        info = await store.put(src, "video/mp4")
        assert info.url == f"http://cas.test/{digest}"
        assert (info.sha256, info.size_bytes, info.content_type) == (
            digest,
            len(payload),
            "video/mp4",
        )
        path, headers, body = server.requests[-1]
        assert path == f"/v1/artifacts/{digest}" and body == payload
        assert headers["authorization"] == "Bearer k3y"
        assert headers["transfer-encoding"] == "chunked"
        assert headers["x-content-sha256"] == digest

        server.answer = {"url": "http://cas.test/x", "sha256": "0" * 64, "size_bytes": len(payload)}
        with pytest.raises(ExecutionError) as err:
            await store.put(src, "video/mp4")
        assert err.value.code == "artifact_upload_failed" and err.value.retryable

        server.answer, server.status = None, 503
        with pytest.raises(ExecutionError) as err:
            await store.put(src, "video/mp4")
        assert err.value.retryable and "503" in err.value.message
        server.status = 401
        with pytest.raises(ExecutionError) as err:
            await store.put(src, "video/mp4")
        assert not err.value.retryable


async def test_download_streams_and_verifies_sha256(file_server, tmp_path: Path, procs) -> None:
    data = b"media bytes " * 5000
    (file_server.directory / "in.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "got.bin"
    got = await download(
        f"{file_server.url}/files/in.bin", dest, max_bytes=10**6, allow_private=True,
        expected_sha256=digest.upper(),
    )  # fmt: skip
    assert (got.sha256, got.size_bytes, got.path) == (digest, len(data), dest)
    assert dest.read_bytes() == data

    dest2 = tmp_path / "bad.bin"
    with pytest.raises(ExecutionError) as err:
        await download(
            f"{file_server.url}/files/in.bin", dest2, max_bytes=10**6, allow_private=True,
            expected_sha256="ab" * 32,
        )  # fmt: skip
    assert err.value.code == "checksum_mismatch" and not err.value.retryable
    assert [p.name for p in procs.listing(tmp_path)] == ["got.bin", "served"]


async def test_download_refuses_loopback_without_contacting_it(file_server, tmp_path: Path) -> None:
    (file_server.directory / "in.bin").write_bytes(b"x")
    port = file_server.url.rsplit(":", 1)[1]
    for url in (f"{file_server.url}/files/in.bin", f"http://localhost:{port}/files/in.bin"):
        with pytest.raises(ExecutionError) as err:
            await download(url, tmp_path / "x", max_bytes=100)
        assert err.value.code == "download_refused" and "loopback" in err.value.message
    assert file_server.hits == 0


async def test_download_size_cap(file_server, tmp_path: Path, procs) -> None:
    (file_server.directory / "big.bin").write_bytes(b"y" * 5000)
    with pytest.raises(ExecutionError) as err:  # refused from Content-Length
        await download(
            f"{file_server.url}/files/big.bin", tmp_path / "a", max_bytes=4999, allow_private=True
        )
    assert err.value.code == "input_too_large"
    with pytest.raises(ExecutionError) as err:  # no Content-Length: cut off while streaming
        await download(
            f"{file_server.url}/endless", tmp_path / "b", max_bytes=300_000, allow_private=True
        )
    assert err.value.code == "input_too_large" and not err.value.retryable
    assert [p.name for p in procs.listing(tmp_path)] == ["served"]


async def test_download_redirects_errors_and_schemes(file_server, tmp_path: Path) -> None:
    (file_server.directory / "r.bin").write_bytes(b"redirected")
    got = await download(
        f"{file_server.url}/redirect?to=/files/r.bin",
        tmp_path / "r",
        max_bytes=100,
        allow_private=True,
    )
    assert got.path.read_bytes() == b"redirected"
    with pytest.raises(ExecutionError) as err:  # each hop is checked: no escape to another scheme
        await download(
            f"{file_server.url}/redirect?to=file:///etc/passwd",
            tmp_path / "p",
            max_bytes=100,
            allow_private=True,
        )
    assert err.value.code == "bad_params"
    for code, retryable in ((404, False), (503, True)):
        with pytest.raises(ExecutionError) as err:
            await download(
                f"{file_server.url}/status/{code}",
                tmp_path / "s",
                max_bytes=100,
                allow_private=True,
            )
        assert (err.value.code, err.value.retryable) == ("download_failed", retryable)
    with pytest.raises(ExecutionError) as err:
        await download("ftp://example.org/x", tmp_path / "f", max_bytes=100)
    assert err.value.code == "bad_params"


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),
        ("240.0.0.1", "reserved"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_refused_address_classes(ip: str, reason: str | None) -> None:
    assert _refused_reason(ipaddress.ip_address(ip)) == reason


async def test_every_resolved_address_is_checked(monkeypatch, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()

    async def resolve(host, port, **kw):
        addrs = ["93.184.216.34", "10.0.0.7"]  # one public, one private: refused
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addrs]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    with pytest.raises(ExecutionError) as err:
        await download("https://mixed.test/x", tmp_path / "x", max_bytes=10)
    assert err.value.code == "download_refused" and "10.0.0.7" in err.value.message


async def test_rebinding_to_loopback_is_caught_at_connect(
    monkeypatch, file_server, tmp_path: Path
) -> None:
    (file_server.directory / "in.bin").write_bytes(b"secret")
    port = int(file_server.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    answers = iter(
        ["93.184.216.34", "127.0.0.1"]
    )  # the check sees a public IP, connect gets loopback

    async def resolve(host, p, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), p))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    with pytest.raises(ExecutionError) as err:
        await download(f"http://rebind.test:{port}/files/in.bin", tmp_path / "x", max_bytes=100)
    assert err.value.code == "download_refused"
    assert "connected to loopback address 127.0.0.1" in err.value.message
    assert not (tmp_path / "x").exists()
