"""HMAC request signing: both strings-to-sign, the verifier, nonce stores, and the doc example."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2

from core.errors import Unauthenticated, Unavailable
from core.hmac_auth import (
    MD_BODY_SHA256,
    MD_HTTP_METHOD,
    MD_HTTP_PATH,
    MD_HTTP_QUERY,
    HmacFailure,
    HmacVerifier,
    canonical_path,
    canonical_query,
    compute_signature,
    sha256_hex,
    sign_grpc,
    sign_rest,
    string_to_sign_grpc,
    string_to_sign_rest,
)
from core.nonces import MemoryNonceStore, RedisNonceStore

SECRET = b"test-secret-0123456789abcdef"
NOW = 1_800_000_000
KEY = "key_1"
METHOD = "/aitbc.coordinator.v1.JobService/SubmitJob"
DOC = Path(__file__).resolve().parents[2] / "docs" / "hmac-signing.md"


class FakeTime:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(store=None, clock=None) -> HmacVerifier:
    return HmacVerifier(store or MemoryNonceStore(), clock=clock or FakeTime())


def rest_call(headers, method="POST", path="/v1/jobs", query="", body=b"{}", extra=()):
    """Metadata as the gateway forwards a REST request."""
    return [
        *((k.lower(), v) for k, v in headers.items()),
        (MD_HTTP_METHOD, method),
        (MD_HTTP_PATH, path),
        (MD_HTTP_QUERY, query),
        (MD_BODY_SHA256, sha256_hex(body)),
        *extra,
    ]


async def expect_failure(reason: str, coro) -> HmacFailure:
    with pytest.raises(HmacFailure) as info:
        await coro
    assert info.value.reason == reason, info.value.message
    return info.value


# -- canonical forms --------------------------------------------------------------------------


def test_canonical_path_normalises_encoding_but_keeps_encoded_slash():
    assert canonical_path("/v1/jobs/a%7eb") == canonical_path("/v1/jobs/a~b") == "/v1/jobs/a~b"
    assert canonical_path("/v1/x/a%2fb") == "/v1/x/a%2Fb" != canonical_path("/v1/x/a/b")
    assert canonical_path("/v1/c d/é") == "/v1/c%20d/%C3%A9"
    for bad in ("v1/jobs", "/v1/jobs?a=1", "/v1#x"):
        with pytest.raises(ValueError, match="path"):
            canonical_path(bad)


def test_canonical_query_sorts_and_encodes_both_spellings_alike():
    raw = "b=2&a=x+y&a=1&&flag&%C3%A9=%2B"
    pairs = [("b", "2"), ("a", "x y"), ("a", "1"), ("flag", ""), ("é", "+")]
    assert canonical_query(raw) == canonical_query(pairs) == "%C3%A9=%2B&a=1&a=x%20y&b=2&flag="
    assert canonical_query("?") == canonical_query([]) == ""


def test_string_to_sign_layouts():
    sts = string_to_sign_rest("post", "/v1/jobs", "b=1&a=2", sha256_hex(b"x"), NOW, "n" * 16)
    assert sts.split("\n") == [
        "AITBC1-HMAC-SHA256",
        "POST",
        "/v1/jobs",
        "a=2&b=1",
        str(NOW),
        "n" * 16,
        sha256_hex(b"x"),
    ]
    sts = string_to_sign_grpc(METHOD, sha256_hex(b"req"), NOW, "n" * 16)
    assert sts.split("\n") == [
        "AITBC1-HMAC-SHA256",
        "GRPC",
        METHOD,
        "",
        str(NOW),
        "n" * 16,
        sha256_hex(b"req"),
    ]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: string_to_sign_grpc("SubmitJob", "0" * 64, NOW, "n" * 16), "full_method"),
        (lambda: string_to_sign_grpc(METHOD, "xyz", NOW, "n" * 16), "body_sha256"),
        (lambda: string_to_sign_grpc(METHOD, "0" * 64, "-1", "n" * 16), "timestamp"),
        (lambda: string_to_sign_grpc(METHOD, "0" * 64, NOW, "short"), "nonce"),
        (lambda: string_to_sign_rest("GE T", "/", "", "0" * 64, NOW, "n" * 16), "method"),
        (lambda: sign_rest(b"", "GET", "/", "", b""), "secret"),
    ],
)
def test_builders_name_the_bad_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_signers_fill_in_time_and_a_valid_random_nonce():
    a = sign_rest(SECRET, "GET", "/v1/jobs", "", b"")
    b = sign_grpc(SECRET, METHOD, b"")
    assert a["X-Nonce"] != dict(b)["x-nonce"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,128}", a["X-Nonce"])
    assert re.fullmatch(r"[0-9a-f]{64}", a["X-Signature"])
    assert a["X-Timestamp"].isdigit() and dict(b)["x-timestamp"].isdigit()


# -- the verifier -----------------------------------------------------------------------------


async def test_good_signatures_rest_and_grpc_forms():
    v = verifier()
    headers = sign_rest(SECRET, "POST", "/v1/jobs", [("dry", "1")], b"{}", NOW, "nonce-rest-000001")
    await v.verify_call(
        SECRET,
        key_id=KEY,
        full_method=METHOD,
        request_bytes=b"transcoded-proto-bytes",
        metadata=rest_call(headers, query="dry=1"),
        via_gateway=True,
    )
    md = sign_grpc(SECRET, METHOD, b"\x0a\x02hi", NOW, "nonce-grpc-000001")
    await v.verify_call(
        SECRET,
        key_id=KEY,
        full_method=METHOD,
        request_bytes=b"\x0a\x02hi",
        metadata=md,
        via_gateway=False,
    )
    # A mapping works as well as pairs, and upper-case hex is accepted.
    md = dict(sign_grpc(SECRET, METHOD, b"", NOW, "nonce-grpc-000002"))
    md["x-signature"] = md["x-signature"].upper()
    await v.verify_call(
        SECRET, key_id=KEY, full_method=METHOD, request_bytes=b"", metadata=md, via_gateway=False
    )


async def test_failure_is_unauthenticated_with_reason_detail():
    headers = sign_rest(b"other-secret", "GET", "/v1/jobs", "", b"", NOW, "nonce-wrong-secret")
    err = await expect_failure(
        "bad_signature",
        verifier().verify_call(
            SECRET,
            key_id=KEY,
            full_method=METHOD,
            request_bytes=b"",
            metadata=rest_call(headers, "GET", body=b""),
            via_gateway=True,
        ),
    )
    assert isinstance(err, Unauthenticated) and err.code == grpc.StatusCode.UNAUTHENTICATED
    status = err.to_status()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "bad_signature"


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"ttl_seconds":1}'},
        {"path": "/v1/jobs/other"},
        {"query": "dry=0"},
        {"method": "PUT"},
    ],
    ids=["body", "path", "query", "method"],
)
async def test_tampered_rest_request_is_refused(change):
    signed = {"method": "POST", "path": "/v1/jobs", "query": "dry=1", "body": b"{}"}
    headers = sign_rest(
        SECRET, signed["method"], signed["path"], signed["query"], signed["body"], NOW, "n" * 20
    )
    store = MemoryNonceStore()
    await expect_failure(
        "bad_signature",
        verifier(store).verify_call(
            SECRET,
            key_id=KEY,
            full_method=METHOD,
            request_bytes=b"",
            metadata=rest_call(headers, **{**signed, **change}),
            via_gateway=True,
        ),
    )
    assert len(store) == 0  # a refused request does not burn the nonce


async def test_tampered_grpc_request_and_method_are_refused():
    md = sign_grpc(SECRET, METHOD, b"\x0a\x01a", NOW, "n" * 20)
    v = verifier()
    for method, body in (
        (METHOD, b"\x0a\x01b"),
        ("/aitbc.coordinator.v1.JobService/GetJob", b"\x0a\x01a"),
    ):
        await expect_failure(
            "bad_signature",
            v.verify_call(
                SECRET,
                key_id=KEY,
                full_method=method,
                request_bytes=body,
                metadata=md,
                via_gateway=False,
            ),
        )


async def test_forged_gateway_metadata_is_ignored_on_direct_grpc_calls():
    # The attacker signs a cheap REST request and replays it as raw gRPC with other bytes.
    headers = sign_rest(SECRET, "GET", "/v1/jobs", "", b"", NOW, "n" * 20)
    forged = rest_call(headers, "GET", body=b"")
    v = verifier()
    kw = {"key_id": KEY, "full_method": METHOD, "request_bytes": b"\x0a\x03evil"}
    await expect_failure(
        "bad_signature", v.verify_call(SECRET, metadata=forged, via_gateway=False, **kw)
    )
    # From the gateway, a call without the http metadata is checked in the gRPC form.
    md = sign_grpc(SECRET, METHOD, b"\x0a\x03evil", NOW, "m" * 20)
    await v.verify_call(SECRET, metadata=md, via_gateway=True, **kw)


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
async def test_stale_timestamp_both_directions(offset):
    clock = FakeTime()
    md = sign_grpc(SECRET, METHOD, b"", NOW + offset, "n" * 20)
    err = await expect_failure(
        "stale_timestamp",
        verifier(clock=clock).verify_call(
            SECRET,
            key_id=KEY,
            full_method=METHOD,
            request_bytes=b"",
            metadata=md,
            via_gateway=False,
        ),
    )
    assert ("future" if offset > 0 else "past") in err.message


@pytest.mark.parametrize("offset", [-300, 300])
async def test_edge_of_the_window_is_accepted(offset):
    md = sign_grpc(SECRET, METHOD, b"", NOW + offset, "n" * 20)
    await verifier().verify_call(
        SECRET, key_id=KEY, full_method=METHOD, request_bytes=b"", metadata=md, via_gateway=False
    )


def _good_md(nonce="n" * 20):
    return dict(sign_grpc(SECRET, METHOD, b"", NOW, nonce))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda md: md.pop("x-signature"), "missing_signature"),
        (lambda md: md.update({"x-signature": ""}), "missing_signature"),
        (lambda md: md.update({"x-signature": "zz" * 32}), "bad_signature"),
        (lambda md: md.update({"x-signature": md["x-signature"][:-1]}), "bad_signature"),
        (lambda md: md.pop("x-timestamp"), "malformed_timestamp"),
        (lambda md: md.update({"x-timestamp": "1.8e9"}), "malformed_timestamp"),
        (lambda md: md.update({"x-timestamp": "-1800000000"}), "malformed_timestamp"),
        (lambda md: md.pop("x-nonce"), "malformed_nonce"),
        (lambda md: md.update({"x-nonce": "short"}), "malformed_nonce"),
        (lambda md: md.update({"x-nonce": "has spaces in it...."}), "malformed_nonce"),
        (lambda md: md.update({"x-nonce": "n" * 129}), "malformed_nonce"),
    ],
)
async def test_malformed_headers(edit, reason):
    md = _good_md()
    edit(md)
    await expect_failure(
        reason,
        verifier().verify_call(
            SECRET,
            key_id=KEY,
            full_method=METHOD,
            request_bytes=b"",
            metadata=md,
            via_gateway=False,
        ),
    )


async def test_repeated_or_binary_metadata_is_refused():
    md = sign_grpc(SECRET, METHOD, b"", NOW, "n" * 20)
    v = verifier()
    kw = {"key_id": KEY, "full_method": METHOD, "request_bytes": b"", "via_gateway": False}
    await expect_failure("bad_signature", v.verify_call(SECRET, metadata=[*md, md[2]], **kw))
    await expect_failure(
        "malformed_nonce",
        v.verify_call(SECRET, metadata=[*md[:1], ("x-nonce", b"n" * 20), md[2]], **kw),
    )


async def test_broken_gateway_metadata_is_refused():
    headers = sign_rest(SECRET, "GET", "/v1/jobs", "", b"", NOW, "n" * 20)
    md = [(k.lower(), v) for k, v in headers.items()] + [
        (MD_HTTP_METHOD, "GET"),
        (MD_HTTP_PATH, "/v1/jobs"),
    ]
    err = await expect_failure(
        "bad_signature",
        verifier().verify_call(
            SECRET, key_id=KEY, full_method=METHOD, request_bytes=b"", metadata=md, via_gateway=True
        ),
    )
    assert "body_sha256" in err.message


async def test_verify_with_a_prebuilt_string_to_sign():
    sts = string_to_sign_grpc(METHOD, sha256_hex(b""), NOW, "n" * 20)
    sig = compute_signature(SECRET, sts)
    v = verifier()
    await v.verify(
        SECRET, key_id=KEY, signature=sig, timestamp=str(NOW), nonce="n" * 20, string_to_sign=sts
    )
    with pytest.raises(ValueError, match="key_id"):
        await v.verify(
            SECRET, key_id="", signature=sig, timestamp=str(NOW), nonce="n" * 20, string_to_sign=sts
        )


# -- replay -----------------------------------------------------------------------------------


async def _replay_checks(store) -> None:
    v = verifier(store)
    kw = {"full_method": METHOD, "request_bytes": b"", "via_gateway": False}
    md = sign_grpc(SECRET, METHOD, b"", NOW, "replay-nonce-0001")
    await v.verify_call(SECRET, key_id=KEY, metadata=md, **kw)
    await expect_failure("replayed_nonce", v.verify_call(SECRET, key_id=KEY, metadata=md, **kw))
    # Nonces are scoped per key: another key may use the same nonce.
    other = sign_grpc(b"other-secret", METHOD, b"", NOW, "replay-nonce-0001")
    await v.verify_call(b"other-secret", key_id="key_2", metadata=other, **kw)
    # A forged signature with a fresh nonce does not record it: the real one still passes.
    fresh = dict(sign_grpc(SECRET, METHOD, b"", NOW, "replay-nonce-0002"))
    await expect_failure(
        "bad_signature",
        v.verify_call(SECRET, key_id=KEY, metadata={**fresh, "x-signature": "0" * 64}, **kw),
    )
    await v.verify_call(SECRET, key_id=KEY, metadata=fresh, **kw)


async def test_replayed_nonce_memory_store():
    await _replay_checks(MemoryNonceStore())


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.from_url(redis_url)
    prefix = f"test:nonce:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.redis
async def test_replayed_nonce_redis_store_shared_across_clients(redis_client, redis_url):
    client, prefix = redis_client
    await _replay_checks(RedisNonceStore(client, prefix=prefix))
    # A second process (its own client) sees the nonces of the first.
    second = aioredis.from_url(redis_url)
    try:
        md = sign_grpc(SECRET, METHOD, b"", NOW, "replay-nonce-0001")
        await expect_failure(
            "replayed_nonce",
            verifier(RedisNonceStore(second, prefix=prefix)).verify_call(
                SECRET,
                key_id=KEY,
                full_method=METHOD,
                request_bytes=b"",
                metadata=md,
                via_gateway=False,
            ),
        )
    finally:
        await second.aclose()
    ttl = await client.ttl(f"{prefix}{KEY}:replay-nonce-0001")
    assert 0 < ttl <= 600


async def test_redis_store_down_fails_closed():
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(Unavailable):
            await RedisNonceStore(client).add_once("k:n", 10)
    finally:
        await client.aclose()


async def test_memory_store_expires_and_is_bounded():
    clock = FakeTime(0.0)
    store = MemoryNonceStore(max_entries=2, clock=clock)
    assert await store.add_once("a", 10) and await store.add_once("b", 10)
    assert not await store.add_once("a", 10)
    with pytest.raises(Unavailable) as info:
        await store.add_once("c", 10)  # full of live nonces: refuse, never evict one
    assert info.value.retry_after_s == 10
    clock.now = 10.0
    assert await store.add_once("a", 10) and await store.add_once("c", 10)
    assert len(store) == 2


# -- the documented example -------------------------------------------------------------------


def _doc_blocks() -> dict[str, str]:
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```\w*\n(.*?)```", text, re.S)
    return {name: body for name, body in found}


def _kv(block: str) -> dict[str, str]:
    return {
        k.strip(): v.strip() for k, _, v in (line.partition("=") for line in block.splitlines())
    }


def test_doc_examples_match_the_code():
    blocks = _doc_blocks()
    values = _kv(blocks["values"])
    secret, ts = values["secret"].encode(), int(values["timestamp"])
    for name in ("rest-post", "rest-get"):
        req = _kv(blocks[f"{name}-request"])
        sts = string_to_sign_rest(
            req["method"],
            req["path"],
            req["query"],
            sha256_hex(req["body"].encode()),
            ts,
            req["nonce"],
        )
        assert sts + "\n" == blocks[f"{name}-string-to-sign"]
        headers = sign_rest(
            secret, req["method"], req["path"], req["query"], req["body"].encode(), ts, req["nonce"]
        )
        assert headers["X-Signature"] + "\n" == blocks[f"{name}-signature"]
    req = _kv(blocks["grpc-request"])
    body = bytes.fromhex(req["request_hex"])
    assert (
        string_to_sign_grpc(req["full_method"], sha256_hex(body), ts, req["nonce"]) + "\n"
        == blocks["grpc-string-to-sign"]
    )
    md = dict(sign_grpc(secret, req["full_method"], body, ts, req["nonce"]))
    assert md["x-signature"] + "\n" == blocks["grpc-signature"]


def test_doc_python_snippet_prints_the_documented_signatures():
    blocks = _doc_blocks()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks["python"], str(DOC), "exec"), {"__name__": "doc_example"})
    expected = [blocks[f"{n}-signature"].strip() for n in ("rest-post", "rest-get", "grpc")]
    assert out.getvalue().split() == expected


@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("openssl")), reason="needs bash and openssl"
)
def test_doc_shell_snippet_sends_the_documented_signature():
    blocks = _doc_blocks()
    # curl is replaced by a function printing its arguments one per line.
    script = 'curl() { printf "%s\\n" "$@"; }\nAITBC_API_KEY=k\n' + blocks["shell"]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    args = done.stdout.splitlines()
    assert f"X-Signature: {blocks['rest-post-signature'].strip()}" in args
    assert args[args.index("--data-binary") + 1] == _kv(blocks["rest-post-request"])["body"]
    assert "http://127.0.0.1:8080/v1/jobs" in args
