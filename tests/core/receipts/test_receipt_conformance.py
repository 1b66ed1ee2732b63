"""The original AITBC receipt vector reproduces exactly: canonical bytes, signature, verify."""

from __future__ import annotations

from core.receipts import (
    KeyRing,
    Signer,
    canonical_bytes,
    parse_public_key,
    parse_seed_hex,
    sign_receipt,
    verify_receipt,
)


def test_canonical_string_matches(vector):
    assert canonical_bytes(vector["payload"]) == vector["canonical"].encode("utf-8")


def test_key_id_and_signature_reproduce(vector):
    signer = Signer.from_seed(parse_seed_hex(vector["private_key_hex"], name="vector"))
    assert signer.public_key.hex() == vector["verify_key_hex"]
    assert signer.key_id == vector["signature"]["key_id"]
    # Ed25519 is deterministic: the same seed and bytes give the same signature.
    assert signer.sign(canonical_bytes(vector["payload"])) == vector["signature"]


def test_vector_verifies_with_its_verify_key(vector):
    public = parse_public_key(vector["verify_key_hex"], name="verify_key_hex")
    doc = {**vector["payload"], "signature": vector["signature"]}
    result = verify_receipt(doc, keys={vector["signature"]["key_id"]: public})
    assert result.ok, result.problems
    assert result.key_id == vector["signature"]["key_id"]
    assert verify_receipt(doc, keys=KeyRing.single(public)).ok


def test_sign_receipt_of_vector_payload_gives_vector_signature(vector):
    signer = Signer.from_seed(bytes.fromhex(vector["private_key_hex"]))
    signed, stored = sign_receipt(vector["payload"], signer)
    assert signed["signature"] == vector["signature"]
    assert stored.startswith(vector["canonical"][:-1].encode())
    assert verify_receipt(stored, keys=KeyRing.single(signer)).ok


def test_vector_with_a_changed_value_fails(vector):
    public = bytes.fromhex(vector["verify_key_hex"])
    doc = {**vector["payload"], "units": 1.91, "signature": vector["signature"]}
    result = verify_receipt(doc, keys=KeyRing.single(public))
    assert not result.ok
    assert "signature: does not verify" in result.problems
