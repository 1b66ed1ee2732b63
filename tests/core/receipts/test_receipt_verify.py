"""Sign and verify: round trip, tampering, attestations, algorithms, keys and field rules."""

from __future__ import annotations

import json

import pytest

from core.receipts import (
    KeyRing,
    ReceiptError,
    canonical_bytes,
    canonical_json,
    sign_receipt,
    verify_receipt,
)

FIELDS = [
    "version",
    "receipt_id",
    "job_id",
    "provider",
    "client",
    "units",
    "unit_type",
    "price",
    "model",
    "prompt_hash",
    "started_at",
    "completed_at",
    "duration_ms",
    "artifact_hash",
    "coordinator_id",
    "nonce",
    "chain_id",
    "metadata",
]


def altered(value):
    if isinstance(value, str):
        return value + "0"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, dict):
        return {**value, "added": 1}
    raise AssertionError(value)


def restamp(stored: bytes, doc: dict) -> bytes:
    """`doc`'s canonical body with the signatures of `stored`: sign_receipt's byte layout."""
    tail = stored[stored.rindex(b',"attestations":') :]
    return canonical_json(doc)[:-1].encode() + tail


@pytest.fixture
def signed(make_receipt, coordinator, attester, miner):
    return sign_receipt(make_receipt(miner=miner), coordinator, attester)


@pytest.fixture
def ring(coordinator):
    return KeyRing.single(coordinator)


@pytest.fixture
def att_ring(attester):
    return KeyRing.single(attester)


def full_check(doc_or_bytes, ring, att_ring, miner):
    return verify_receipt(
        doc_or_bytes,
        keys=ring,
        attestation_keys=att_ring,
        require_attestation=True,
        claim_keys={"miner-7": miner.public_key},
    )


def test_round_trip(signed, ring, att_ring, miner, coordinator):
    doc, stored = signed
    assert json.loads(stored) == doc
    for form in (stored, stored.decode(), bytearray(stored), memoryview(stored), doc):
        result = full_check(form, ring, att_ring, miner)
        assert result.ok, result.problems
        assert result.key_id == coordinator.key_id
        assert result.receipt == doc
    # Plain mapping of key_id -> public key works as well as a KeyRing.
    assert verify_receipt(stored, keys={coordinator.key_id: coordinator.public_key}).ok


def test_re_serialized_receipt_still_verifies(signed, ring, att_ring, miner):
    doc, _ = signed
    pretty = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False).encode()
    assert full_check(pretty, ring, att_ring, miner).ok


def test_signing_does_not_touch_the_input_and_happens_once(make_receipt, coordinator):
    unsigned = make_receipt()
    before = json.dumps(unsigned, sort_keys=True)
    doc, _ = sign_receipt(unsigned, coordinator)
    assert json.dumps(unsigned, sort_keys=True) == before
    assert doc["attestations"] == []
    doc["metadata"]["region"] = "changed"  # the signed copy shares nothing with the input
    assert unsigned["metadata"]["region"] == "eu-west"
    with pytest.raises(ReceiptError, match="already signed"):
        sign_receipt(doc, coordinator)


@pytest.mark.parametrize("field", FIELDS)
def test_tampering_with_a_field_breaks_verification(field, signed, ring, att_ring, miner):
    doc, stored = signed
    tampered = {**doc, field: altered(doc[field])}
    for form in (tampered, restamp(stored, tampered)):
        result = full_check(form, ring, att_ring, miner)
        assert not result.ok
        assert "signature: does not verify" in result.problems
        assert "attestation[0]: does not verify" in result.problems


@pytest.mark.parametrize("field", ["units", "metadata", "nonce"])
def test_removing_a_field_breaks_verification(field, signed, ring):
    doc, stored = signed
    tampered = {k: v for k, v in doc.items() if k != field}
    for form in (tampered, restamp(stored, tampered)):
        assert "signature: does not verify" in verify_receipt(form, keys=ring).problems


def test_adding_a_field_breaks_verification(signed, ring):
    doc, stored = signed
    tampered = {**doc, "bonus": 1}
    for form in (tampered, restamp(stored, tampered)):
        assert "signature: does not verify" in verify_receipt(form, keys=ring).problems


def test_tampering_with_a_metadata_field(signed, ring):
    _doc, stored = signed
    tampered = json.loads(stored)
    tampered["metadata"]["gpu"]["name"] = "RTX 3060"
    for form in (tampered, restamp(stored, tampered)):
        assert verify_receipt(form, keys=ring).problems == ["signature: does not verify"]


@pytest.mark.parametrize("field", ["job_id", "lease_id", "started_at", "completed_at"])
def test_tampering_with_the_miner_claim(field, signed, ring, att_ring, miner):
    _doc, stored = signed
    tampered = json.loads(stored)
    claim = tampered["metadata"]["miner_claim"]["claim"]
    claim[field] = altered(claim[field])
    result = full_check(restamp(stored, tampered), ring, att_ring, miner)
    assert "signature: does not verify" in result.problems
    assert "miner_claim: claim signature: does not verify" in result.problems
    if field == "job_id":
        assert "miner_claim: claim.job_id does not match the receipt's job_id" in result.problems


def test_appended_keys_after_the_signature_cannot_slip_through(signed, ring):
    _, stored = signed
    duplicate = stored[:-1] + b',"units":1000}'
    assert (
        verify_receipt(duplicate, keys=ring)
        .problems[0]
        .startswith("receipt: not valid JSON (duplicate key 'units'")
    )
    extra = stored[:-1] + b',"zzz":1}'
    assert "signature: does not verify" in verify_receipt(extra, keys=ring).problems


def test_signature_swapped_from_another_receipt(make_receipt, coordinator, ring):
    doc, _ = sign_receipt(make_receipt(), coordinator)
    other, _ = sign_receipt(make_receipt(receipt_id="rcpt-other"), coordinator)
    swapped = {**doc, "signature": other["signature"]}
    assert verify_receipt(swapped, keys=ring).problems == ["signature: does not verify"]


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"alg": "RSA"}, "signature: alg 'RSA' not approved"),
        ({"alg": "ed25519"}, "signature: alg 'ed25519' not approved"),
        ({"key_id": "AAAA"}, "signature: unknown key_id 'AAAA'"),
        ({"sig": "***"}, "signature: malformed sig (not unpadded base64url)"),
        ({"sig": "AAAA"}, "signature: malformed sig (3 bytes, expected 64)"),
        ({"sig": ""}, "signature: sig missing"),
    ],
)
def test_bad_signature_objects(patch, problem, signed, ring):
    doc, _ = signed
    bad = {**doc, "signature": {**doc["signature"], **patch}}
    assert problem in verify_receipt(bad, keys=ring).problems


def test_missing_signature(make_receipt, ring):
    assert verify_receipt(make_receipt(), keys=ring).problems == [
        "signature: missing or not an object"
    ]


def test_padded_signature_is_not_accepted(signed, ring):
    doc, _ = signed
    bad = {**doc, "signature": {**doc["signature"], "sig": doc["signature"]["sig"] + "=="}}
    assert (
        "signature: malformed sig (not unpadded base64url)"
        in verify_receipt(bad, keys=ring).problems
    )


def test_signed_by_an_unknown_key(make_receipt, attester, ring):
    doc, _ = sign_receipt(make_receipt(), attester)
    assert verify_receipt(doc, keys=ring).problems == [
        f"signature: unknown key_id {attester.key_id!r}"
    ]


def test_attestation_verified_missing_and_wrong_key(make_receipt, coordinator, attester, ring):
    att_ring = KeyRing.single(attester)
    with_att, _ = sign_receipt(make_receipt(), coordinator, attester)
    without, _ = sign_receipt(make_receipt(), coordinator)
    wrong, _ = sign_receipt(make_receipt(), coordinator, coordinator)

    assert verify_receipt(with_att, keys=ring, attestation_keys=att_ring).ok
    assert verify_receipt(without, keys=ring, attestation_keys=att_ring).ok  # not required
    required = {"keys": ring, "attestation_keys": att_ring, "require_attestation": True}
    assert verify_receipt(with_att, **required).ok
    assert verify_receipt(without, **required).problems == ["attestation: missing (required)"]
    assert verify_receipt(wrong, **required).problems == [
        f"attestation[0]: unknown key_id {coordinator.key_id!r}",
        "attestation: none verifies (required)",
    ]
    assert verify_receipt(with_att, keys=ring, require_attestation=True).problems == [
        "attestation: required but no attestation keys were given"
    ]


def test_attestation_with_a_forged_sig(signed, ring, att_ring):
    doc, _ = signed
    att = {**doc["attestations"][0], "sig": doc["signature"]["sig"]}
    bad = {**doc, "attestations": [att]}
    assert verify_receipt(bad, keys=ring, attestation_keys=att_ring).problems == [
        "attestation[0]: does not verify"
    ]
    assert verify_receipt({**doc, "attestations": {}}, keys=ring).problems == [
        "attestations: must be a list"
    ]


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"completed_at": 1_759_999_999}, "completed_at < started_at"),
        ({"units": -1}, "units < 0"),
        ({"price": -0.5}, "price < 0"),
        ({"price": "4.2"}, "price: must be a finite number"),
        ({"units": True}, "units: must be a finite number"),
        ({"version": "2.0"}, "version: unsupported '2.0' (expected '1.0')"),
        ({"job_id": ""}, "job_id: must be a non-empty string"),
        ({"client": None}, "client: missing"),
        ({"started_at": 1.5}, "started_at: must be a non-negative integer (unix seconds)"),
        ({"duration_ms": -3}, "duration_ms: must be a non-negative integer"),
        ({"artifact_hash": "md5:00"}, 'artifact_hash: must be "sha256:<hex digest>"'),
        ({"chain_id": -1}, "chain_id: must be a non-negative integer or a non-empty string"),
        ({"metadata": []}, "metadata: must be an object"),
        (
            {"metadata": {"result": "x"}},
            "metadata.result: a receipt never carries the job's result",
        ),
    ],
)
def test_field_rules_reported_even_with_a_valid_signature(
    patch, problem, make_receipt, coordinator, ring
):
    # A signer that skipped the rules: the signature is fine, the document is not.
    doc = {**make_receipt(), **patch}
    doc["signature"] = coordinator.sign(canonical_bytes(doc))
    result = verify_receipt(json.dumps(doc), keys=ring)
    assert result.problems == [problem]
    with pytest.raises(ReceiptError, match="invalid receipt"):
        sign_receipt({k: v for k, v in doc.items() if k != "signature"}, coordinator)


@pytest.mark.parametrize(
    ("raw", "start"),
    [
        (b"{not json", "receipt: not valid JSON"),
        (b"[1,2]", "receipt: must be a JSON object"),
        (b'{"a":1,"a":2}', "receipt: not valid JSON (duplicate key 'a'"),
        (b'{"units":NaN}', "receipt: not valid JSON (NaN is not JSON"),
        (b"\xff\xfe", "receipt: not valid JSON"),
    ],
)
def test_unparseable_input(raw, start, ring):
    (problem,) = verify_receipt(raw, keys=ring).problems
    assert problem.startswith(start)


def test_nested_attestations_key_in_metadata_does_not_confuse_the_byte_path(
    make_receipt, coordinator, ring
):
    unsigned = make_receipt(metadata={"attestations": [1], "signature": {"x": 1}})
    _doc, stored = sign_receipt(unsigned, coordinator)
    assert verify_receipt(stored, keys=ring).ok
    tampered = json.loads(stored)
    tampered["metadata"]["attestations"] = [2]
    assert not verify_receipt(restamp(stored, tampered), keys=ring).ok


def test_stored_layout_with_a_non_canonical_body_takes_the_general_path(signed, ring):
    # Same layout as sign_receipt's bytes, but the body is spaced: its raw bytes were never
    # signed, so only re-canonicalizing finds that the content is the signed one.
    doc, stored = signed
    body = json.dumps(
        {k: v for k, v in doc.items() if k not in ("signature", "attestations")}, sort_keys=True
    )
    spaced = body[:-1].encode() + stored[stored.rindex(b',"attestations":') :]
    assert verify_receipt(spaced, keys=ring).ok


def test_text_that_cannot_be_utf8_is_reported(ring):
    assert verify_receipt("\ud800", keys=ring).problems == [
        "receipt: not valid JSON (surrogates not allowed)"
    ]


def test_misconfigured_public_key_is_an_error_not_a_verdict(signed, coordinator):
    doc, _ = signed
    with pytest.raises(ReceiptError, match="32 bytes"):
        verify_receipt(doc, keys={coordinator.key_id: coordinator.public_key[:31]})
