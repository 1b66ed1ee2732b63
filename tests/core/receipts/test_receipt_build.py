"""build_receipt field rules, and a seeded random build → sign → verify → tamper loop."""

from __future__ import annotations

import hashlib
import json
import random
from decimal import Decimal

import pytest

from core.receipts import (
    KeyRing,
    ReceiptError,
    canonical_bytes,
    content_hash,
    issue_receipt,
    sign_receipt,
    verify_receipt,
)


def test_build_fills_version_hashes_ids_and_duration(make_receipt):
    doc = make_receipt(receipt_id=None, nonce=None)
    assert doc["version"] == "1.0"
    payload = {"service": "whisper", "audio_url": "https://example.test/a.wav"}
    expected = hashlib.sha256(canonical_bytes(payload, exclude=())).hexdigest()
    assert doc["prompt_hash"] == f"sha256:{expected}"
    assert "payload" not in json.dumps(doc)
    assert doc["receipt_id"].startswith("rcpt-") and len(doc["receipt_id"]) == 37
    assert len(doc["nonce"]) == 32
    other = make_receipt(receipt_id=None, nonce=None)
    assert (other["receipt_id"], other["nonce"]) != (doc["receipt_id"], doc["nonce"])
    assert doc["duration_ms"] == 7000
    assert make_receipt(duration_ms=6543)["duration_ms"] == 6543


def test_payload_keys_named_signature_are_hashed_too(make_receipt):
    a = make_receipt(payload={"signature": 1})["prompt_hash"]
    b = make_receipt(payload={"signature": 2})["prompt_hash"]
    assert a != b
    assert make_receipt(payload=b"raw")["prompt_hash"] == content_hash(b"raw")


def test_decimal_amounts_go_through_money(make_receipt):
    doc = make_receipt(units=Decimal("1.9000004"), price=Decimal("3"))
    assert doc["units"] == 1.9 and doc["price"] == 3
    assert isinstance(doc["price"], int)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"artifact_hash": "sha256:deadbeef"}, "artifact_hash"),
        ({"artifact_hash": "SHA256:" + "a" * 64}, "artifact_hash"),
        ({"payload": "text"}, "payload"),
        ({"price": float("nan")}, "price"),
        ({"price": "1.0"}, "price"),
        ({"units": True}, "units"),
        ({"units": -1}, "units"),
        ({"metadata": {"payload": {"x": 1}}}, "metadata.payload"),
        ({"metadata": {"result": "x"}}, "metadata.result"),
        ({"metadata": {1: "x"}}, "metadata"),
        ({"metadata": {"a": {"b": float("inf")}}}, "metadata.a.b"),
        ({"metadata": {"a": [object()]}}, "metadata.a[0]"),
        ({"completed_at": 1_759_999_000}, "completed_at"),
        ({"started_at": "2025-01-01"}, "started_at"),
        ({"job_id": ""}, "job_id"),
        ({"chain_id": None}, "chain_id"),
        ({"model": None}, "model"),
    ],
)
def test_build_rejects_bad_fields_naming_them(make_receipt, overrides, field):
    with pytest.raises(ReceiptError) as info:
        make_receipt(**overrides)
    fields = [f for f, _ in info.value.violations]
    assert any(f == field or f.startswith(field) for f in fields), info.value.violations
    assert field in str(info.value)


def test_all_problems_reported_at_once(make_receipt):
    with pytest.raises(ReceiptError) as info:
        make_receipt(units=-1, price=-2, client="")
    assert dict(info.value.violations) == {
        "units": "units < 0",
        "price": "price < 0",
        "client": "must be a non-empty string",
    }


def test_none_metadata_values_are_dropped_from_signature_and_document(make_receipt, coordinator):
    doc, stored = sign_receipt(
        make_receipt(metadata={"a": None, "b": {"c": None, "d": 1}}), coordinator
    )
    assert doc["metadata"] == {"b": {"d": 1}}
    assert json.loads(stored)["metadata"] == {"b": {"d": 1}}
    assert verify_receipt(stored, keys=KeyRing.single(coordinator)).ok


@pytest.mark.parametrize("with_attester", [False, True])
@pytest.mark.parametrize(
    "overrides", [{}, {"metadata": {"a": None, "b": [1, None]}}, {"duration_ms": None}]
)
def test_issue_receipt_stores_what_build_then_sign_stores(
    make_receipt, make_claim, coordinator, attester, miner, with_attester, overrides
):
    attesting = attester if with_attester else None
    fields = dict(
        job_id="job-1",
        provider="miner-7",
        client="client-3",
        units=Decimal("7.0000004"),
        unit_type="gpu_seconds",
        price=Decimal("0.000875"),
        model="m",
        payload={"service": "whisper", "signature": 1},
        started_at=1_760_000_000,
        completed_at=1_760_000_007,
        artifact_hash=content_hash(b"result"),
        coordinator_id="coord-test",
        chain_id=12345,
        metadata={"attempt": 1},
        receipt_id="rcpt-test-1",
        nonce="00ff00ff",
        miner_claim=make_claim(miner),
    )
    fields.update(overrides)
    receipt_id, stored = issue_receipt(coordinator, attesting, **fields)
    doc, expected = sign_receipt(make_receipt(**fields), coordinator, attesting)
    assert (receipt_id, stored) == (doc["receipt_id"], expected)
    assert verify_receipt(stored, keys=KeyRing.single(coordinator)).ok
    # Fresh ids: one random draw, still two independent 16-byte values.
    receipt_id, stored = issue_receipt(coordinator, **{**fields, "receipt_id": None, "nonce": None})
    parsed = json.loads(stored)
    assert receipt_id == parsed["receipt_id"] and len(receipt_id) == 37
    assert len(parsed["nonce"]) == 32 and parsed["nonce"] != receipt_id[5:]
    with pytest.raises(ReceiptError) as err:
        issue_receipt(coordinator, **{**fields, "client": ""})
    assert "client" in str(err.value)


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice('ab9-_ "\\é中😀\n') for _ in range(rng.randrange(1, 10)))


def test_seeded_random_receipts_round_trip_and_detect_any_change(
    make_receipt, make_claim, coordinator, attester, miner
):
    rng = random.Random(7)
    ring, att_ring = KeyRing.single(coordinator), KeyRing.single(attester)
    checks = {"keys": ring, "attestation_keys": att_ring, "require_attestation": True}
    for i in range(150):
        artifact = content_hash(str(i).encode())
        started = rng.randrange(1_600_000_000, 1_800_000_000)
        metadata = {
            _random_text(rng): rng.choice([None, 1, -2.5, _random_text(rng), [1, None], {}])
            for _ in range(rng.randrange(4))
        }
        claim = None
        if rng.random() < 0.5:
            claim = make_claim(miner, job_id=f"job-{i}", artifact_hash=artifact)
        unsigned = make_receipt(
            job_id=f"job-{i}",
            client=_random_text(rng),
            model=_random_text(rng),
            units=rng.choice([0, rng.randrange(10**6), round(rng.uniform(0, 1e4), 6)]),
            price=round(rng.uniform(0, 100), 6),
            started_at=started,
            completed_at=started + rng.randrange(10**5),
            artifact_hash=artifact,
            metadata=metadata,
            miner_claim=claim,
            receipt_id=None,
            nonce=None,
        )
        doc, stored = sign_receipt(unsigned, coordinator, attester)
        assert json.loads(stored) == doc
        assert verify_receipt(stored, **checks).ok
        assert verify_receipt(json.dumps(doc, ensure_ascii=False, indent=1), **checks).ok

        # Flip one character of the signed region: never verifies, never raises.
        body_end = stored.rindex(b',"attestations":')
        pos = rng.randrange(1, body_end)
        flipped = stored[:pos] + bytes([stored[pos] ^ rng.choice([1, 2, 4, 8])]) + stored[pos + 1 :]
        result = verify_receipt(flipped, **checks)
        if json_equivalent(flipped, stored):
            continue  # e.g. a flipped escape that decodes to the same text
        assert not result.ok, flipped


def json_equivalent(a: bytes, b: bytes) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False
