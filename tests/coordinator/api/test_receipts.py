"""Receipts from real jobs: signed, attested, co-signed by the miner, rotated, access-checked."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import httpx
import pytest
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb

from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from coordinator.testing import StreamMiner, caps, inline_result
from core.receipts import KeyRing, PublicKeyInfo, Signer, b64url_decode, sign_claim, verify_receipt

from .conftest import KEYS, make_config

SIGNING_A = "11" * 32
SIGNING_B = "22" * 32
ATTEST = "33" * 32


def _secs(text: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) if text else None


async def published_rings(http: httpx.AsyncClient) -> tuple[KeyRing, KeyRing | None]:
    doc = (await http.get("/v1/keys")).json()  # public: no key needed
    rings = {}
    for purpose in ("signing", "attestation"):
        infos = [
            PublicKeyInfo(
                b64url_decode(k["key_id"]), _secs(k.get("valid_from")), _secs(k.get("valid_until"))
            )
            for k in doc["keys"]
            if k["purpose"] == purpose
        ]
        current = [i for i in infos if i.valid_until is None]
        rings[purpose] = (
            KeyRing(current[0], [i for i in infos if i.valid_until is not None]) if infos else None
        )
    return rings["signing"], rings["attestation"]


async def start_app(tmp_path, store, **cfg):
    return await CoordinatorApp(make_config(tmp_path, **cfg), store=store).start()


async def run_job(app, http, miner: StreamMiner, value, claim_signer: Signer | None = None):
    r = await http.post(
        "/v1/jobs",
        json={"payload": {"service": "echo", "parameters": {"v": value}}},
        headers={"X-Api-Key": KEYS["client"]["alice"]},
    )
    job_id = r.json()["job_id"]
    a = (await miner.next("assignment")).assignment
    miner.started(a)
    result = inline_result(value)
    delivery = miner_pb.JobResultDelivery(lease_id=a.lease_id, job_id=job_id, result=result)
    if claim_signer is not None:
        from core.jsonvalue import canonical_sha256

        doc = sign_claim(
            claim_signer,
            job_id=job_id,
            lease_id=a.lease_id,
            artifact_hash=f"sha256:{canonical_sha256(value)}",
            started_at=1_800_000_000_000,
            completed_at=1_800_000_001_000,
            miner_id="m1",
        )
        delivery.claim.CopyFrom(miner_pb.MinerClaim(**doc["claim"], **doc["signature"]))
    miner.send(result=delivery)
    return job_id, (await miner.next("ack")).ack


async def test_receipt_of_a_real_job_verifies_and_is_served_byte_for_byte(tmp_path):
    app = await start_app(
        tmp_path,
        MemoryJobStore(),
        receipt_signing_key_hex=SIGNING_A,
        receipt_attestation_key_hex=ATTEST,
    )
    async with httpx.AsyncClient(base_url=app.http_base) as http:
        miner = await StreamMiner(
            app.grpc_target, KEYS["miner"]["m1"], caps(services={"echo": "0.25"})
        ).start()
        job_id, ack = await run_job(app, http, miner, {"answer": 42})
        assert ack.accepted and ack.receipt
        alice = {"X-Api-Key": KEYS["client"]["alice"]}
        r = await http.get(f"/v1/jobs/{job_id}/receipt", headers=alice)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.content == ack.receipt.encode()  # the exact signed bytes, never re-serialized
        signing, attestation = await published_rings(http)
        result = verify_receipt(
            r.content, keys=signing, attestation_keys=attestation, require_attestation=True
        )
        assert result.ok, result.problems
        doc = json.loads(r.content)
        assert doc["job_id"] == job_id and doc["provider"] == "m1" and doc["client"] == "alice"
        assert doc["unit_type"] == "gpu_seconds" and doc["units"] >= 0 and doc["price"] >= 0
        assert "answer" not in r.text and doc["prompt_hash"].startswith("sha256:")
        assert doc["completed_at"] >= doc["started_at"]
        # a duplicate result is acknowledged with the same receipt; no second receipt exists
        miner.send(
            result=miner_pb.JobResultDelivery(
                lease_id=doc["metadata"].get("lease_id", "") or ack.lease_id,
                job_id=job_id,
                result=inline_result({"answer": 42}),
            )
        )
        again = (await miner.next("ack")).ack
        assert again.accepted and again.receipt == ack.receipt
        history = (await http.get(f"/v1/jobs/{job_id}/receipts", headers=alice)).json()["receipts"]
        assert len(history) == 1 and history[0]["document"].encode() == r.content
        # owner or admin only; unknown or foreign job -> 404
        assert (
            await http.get(
                f"/v1/jobs/{job_id}/receipt", headers={"X-Api-Key": KEYS["client"]["bob"]}
            )
        ).status_code == 404
        assert (
            await http.get(
                f"/v1/jobs/{job_id}/receipt", headers={"X-Api-Key": KEYS["admin"]["root"]}
            )
        ).status_code == 200
        assert (
            await http.get(f"/v1/jobs/job_{'0' * 32}/receipt", headers=alice)
        ).status_code == 404
        await miner.close()
    await app.stop()


async def test_miner_claim_is_required_verified_and_carried(tmp_path):
    app = await start_app(tmp_path, MemoryJobStore())
    miner_key, other = Signer.generate(), Signer.generate()
    async with httpx.AsyncClient(base_url=app.http_base) as http:
        miner = StreamMiner(
            app.grpc_target, KEYS["miner"]["m1"], caps(slots=3), public_key=miner_key.key_id
        )
        await miner.start()
        _, ack = await run_job(app, http, miner, 1)  # no claim at all
        assert not ack.accepted and ack.code == "bad_claim"
        _, ack = await run_job(app, http, miner, 2, claim_signer=other)  # signed by someone else
        assert not ack.accepted and ack.code == "bad_claim"
        job_id, ack = await run_job(app, http, miner, 3, claim_signer=miner_key)
        assert ack.accepted, ack.message
        doc = json.loads(ack.receipt)
        assert doc["metadata"]["miner_claim"]["claim"]["job_id"] == job_id
        signing, _ = await published_rings(http)
        result = verify_receipt(
            ack.receipt.encode(), keys=signing, claim_keys={"m1": miner_key.public_key}
        )
        assert result.ok, result.problems
        await miner.close()
    await app.stop()


async def test_rotation_keeps_old_receipts_verifiable(tmp_path):
    store = MemoryJobStore()
    app = await start_app(tmp_path, store, receipt_signing_key_hex=SIGNING_A)
    async with httpx.AsyncClient(base_url=app.http_base) as http:
        miner = await StreamMiner(app.grpc_target, KEYS["miner"]["m1"], caps()).start()
        _, old_ack = await run_job(app, http, miner, "old")
        await miner.abort()
    await app.stop()
    app = await start_app(tmp_path, store, receipt_signing_key_hex=SIGNING_B)
    async with httpx.AsyncClient(base_url=app.http_base) as http:
        signing, _ = await published_rings(http)
        assert signing.current.key_id == Signer.from_seed(bytes.fromhex(SIGNING_B)).key_id
        assert [i.key_id for i in signing.retired] == [
            Signer.from_seed(bytes.fromhex(SIGNING_A)).key_id
        ]
        assert verify_receipt(old_ack.receipt.encode(), keys=signing).ok
        miner = await StreamMiner(app.grpc_target, KEYS["miner"]["m1"], caps()).start()
        _, new_ack = await run_job(app, http, miner, "new")
        assert json.loads(new_ack.receipt)["signature"]["key_id"] == signing.current.key_id
        assert verify_receipt(new_ack.receipt.encode(), keys=signing).ok
        await miner.close()
    await app.stop()


async def test_generated_signing_key_is_private_and_reused(tmp_path):
    app = await start_app(tmp_path, MemoryJobStore())
    key_file = tmp_path / "receipt-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    first = app.receipt_keys.signer.key_id
    await app.stop()
    app = await start_app(tmp_path, MemoryJobStore())
    assert app.receipt_keys.signer.key_id == first
    await app.stop()


async def test_malformed_key_fails_start_up_naming_the_variable(tmp_path):
    with pytest.raises(ValueError, match="RECEIPT_SIGNING_KEY_HEX"):
        await start_app(tmp_path, MemoryJobStore(), receipt_signing_key_hex="not-hex")


async def test_keys_over_grpc_need_no_api_key(tmp_path):
    from aitbc.coordinator.v1 import receipt_service_pb2 as rpb
    from aitbc.coordinator.v1 import receipt_service_pb2_grpc as rgrpc

    app = await start_app(tmp_path, MemoryJobStore(), receipt_signing_key_hex=SIGNING_A)
    async with grpc.aio.insecure_channel(app.grpc_target) as ch:
        keys = await rgrpc.KeyServiceStub(ch).ListKeys(rpb.ListKeysRequest())
        assert [k.purpose for k in keys.keys] == [
            "signing"
        ] and keys.coordinator_id == "coordinator-1"
    await app.stop()
