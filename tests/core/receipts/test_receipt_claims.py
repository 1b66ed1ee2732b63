"""Miner co-signature: signing, verifying, forgeries, and the claim inside a receipt."""

from __future__ import annotations

import json

import pytest

from core.receipts import (
    KeyRing,
    ReceiptError,
    canonical_bytes,
    content_hash,
    sign_claim,
    sign_receipt,
    verify_claim,
    verify_receipt,
)
from core.receipts.canonical import b64url_encode


def test_claim_shape_and_signature(miner, make_claim):
    doc = make_claim(miner)
    assert set(doc) == {"claim", "signature"}
    assert doc["signature"]["alg"] == "Ed25519"
    assert doc["signature"]["key_id"] == miner.key_id
    assert verify_claim(doc, miner.public_key) == []
    # Signed over the same canonical form as receipts.
    assert miner.sign(canonical_bytes(doc["claim"])) == doc["signature"]


def test_claim_by_another_key_is_rejected(miner, coordinator, make_claim):
    forged = make_claim(coordinator)  # right fields, wrong key
    assert verify_claim(forged, miner.public_key) == [
        "claim signature: key_id is not the miner's registered key"
    ]
    # Even when the forger writes the miner's key_id, the signature itself fails.
    relabelled = {**forged, "signature": {**forged["signature"], "key_id": miner.key_id}}
    assert verify_claim(relabelled, miner.public_key) == ["claim signature: does not verify"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_id", "job-2"),
        ("lease_id", "lease-9"),
        ("artifact_hash", content_hash(b"other")),
        ("started_at", 1_760_000_000_001),
        ("completed_at", 1_760_000_009_000),
        ("miner_id", "miner-8"),
    ],
)
def test_altered_claim_field_is_rejected(field, value, miner, make_claim):
    doc = make_claim(miner)
    doc["claim"][field] = value
    assert verify_claim(doc, miner.public_key) == ["claim signature: does not verify"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"started_at": 1_760_000_000}, "claim.started_at: looks like seconds"),
        ({"completed_at": 1_000}, "claim.completed_at: looks like seconds"),
        ({"job_id": ""}, "claim.job_id: must be a non-empty string"),
        ({"lease_id": 3}, "claim.lease_id: must be a non-empty string"),
        ({"artifact_hash": "deadbeef"}, "claim.artifact_hash: must be"),
        ({"started_at": 1_760_000_009_000}, "claim.completed_at < claim.started_at"),
        ({"completed_at": 1.76e12}, "claim.completed_at: must be a non-negative integer"),
    ],
)
def test_sign_claim_validates(overrides, problem, miner, make_claim):
    with pytest.raises(ReceiptError, match="invalid claim") as info:
        make_claim(miner, **overrides)
    assert problem in str(info.value)


def test_verify_claim_reports_shape_problems(miner, make_claim):
    doc = make_claim(miner)
    assert verify_claim([], miner.public_key) == [
        "claim: must be an object with 'claim' and 'signature'"
    ]
    extra = {**doc, "note": 1}
    assert verify_claim(extra, miner.public_key) == ["claim: unexpected field 'note'"]
    more = {**doc, "claim": {**doc["claim"], "gpu": "x"}}
    assert "claim.gpu: unexpected field" in verify_claim(more, miner.public_key)
    bad_alg = {**doc, "signature": {**doc["signature"], "alg": "HS256"}}
    assert verify_claim(bad_alg, miner.public_key) == ["claim signature: alg 'HS256' not approved"]
    with pytest.raises(ReceiptError, match="public_key"):
        verify_claim(doc, b"short")


def test_receipt_carries_the_claim(make_receipt, miner, coordinator):
    doc, stored = sign_receipt(make_receipt(miner=miner), coordinator)
    assert doc["metadata"]["miner_claim"]["signature"]["key_id"] == miner.key_id
    ring = KeyRing.single(coordinator)
    claim_keys = {"miner-7": miner.public_key}
    assert verify_receipt(stored, keys=ring, claim_keys=claim_keys).ok
    # Without claim_keys the claim is still checked against its own key (integrity).
    assert verify_receipt(stored, keys=ring).ok
    assert verify_receipt(stored, keys=ring, claim_keys={"miner-8": miner.public_key}).problems == [
        "miner_claim: unknown miner 'miner-7'"
    ]
    assert verify_receipt(
        stored, keys=ring, claim_keys={"miner-7": coordinator.public_key}
    ).problems == ["miner_claim: claim signature: key_id is not the miner's registered key"]


def test_receipt_signed_with_a_forged_claim_is_rejected(
    make_receipt, make_claim, miner, coordinator
):
    # A coordinator (or anyone) inventing a claim cannot produce the miner's signature.
    forged = make_claim(coordinator)
    forged["signature"]["key_id"] = miner.key_id
    _doc, stored = sign_receipt(make_receipt(miner_claim=forged), coordinator)
    result = verify_receipt(
        stored, keys=KeyRing.single(coordinator), claim_keys={"miner-7": miner.public_key}
    )
    assert result.problems == ["miner_claim: claim signature: does not verify"]


def test_claim_must_match_the_receipt(make_receipt, make_claim, miner, coordinator):
    with pytest.raises(ReceiptError, match=r"miner_claim\.job_id"):
        make_receipt(miner_claim=make_claim(miner, job_id="job-2"))
    with pytest.raises(ReceiptError, match=r"miner_claim\.artifact_hash"):
        make_receipt(miner_claim=make_claim(miner, artifact_hash=content_hash(b"x")))
    with pytest.raises(ReceiptError, match=r"miner_claim\.miner_id"):
        make_receipt(miner_claim=make_claim(miner, miner_id="miner-8"))
    with pytest.raises(ReceiptError, match="miner_claim"):
        make_receipt(miner_claim={"claim": {}})
    with pytest.raises(ReceiptError, match=r"miner_claim\.job_id"):
        make_receipt(metadata={"miner_claim": make_claim(miner, job_id="job-2")})
    assert make_receipt(metadata={"miner_claim": make_claim(miner)})["metadata"]["miner_claim"]
    # A signer that skipped build_receipt's checks is caught by the verifier.
    doc = make_receipt()
    claim = make_claim(miner, job_id="job-2")
    doc["metadata"] = {"miner_claim": claim}
    doc["signature"] = coordinator.sign(canonical_bytes(doc))
    result = verify_receipt(json.dumps(doc), keys=KeyRing.single(coordinator))
    assert result.problems == ["miner_claim: claim.job_id does not match the receipt's job_id"]
    doc["metadata"] = {"miner_claim": {"claim": claim["claim"]}}
    doc["signature"] = coordinator.sign(canonical_bytes(doc))
    assert verify_receipt(doc, keys=KeyRing.single(coordinator)).problems == [
        "miner_claim: must be {'claim': ..., 'signature': ...}"
    ]
    bad_kid = {**claim, "signature": {**claim["signature"], "key_id": b64url_encode(b"x")}}
    doc["metadata"] = {"miner_claim": bad_kid}
    doc["signature"] = coordinator.sign(canonical_bytes(doc))
    assert verify_receipt(doc, keys=KeyRing.single(coordinator)).problems[0] == (
        "miner_claim: signature key_id is not an Ed25519 public key"
    )


def test_sign_claim_direct(miner):
    doc = sign_claim(
        miner,
        job_id="j",
        lease_id="l",
        artifact_hash=content_hash(b"r"),
        started_at=1_700_000_000_000,
        completed_at=1_700_000_000_000,
        miner_id="m",
    )
    assert verify_claim(doc, miner.public_key) == []
