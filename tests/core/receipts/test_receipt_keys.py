"""Keys: seeds, the signing key file, public key parsing, KeyRing rotation and its JSON."""

from __future__ import annotations

import json
import os
import stat

import pytest
from nacl.signing import SigningKey

from core.errors import InvalidArgument
from core.receipts import (
    KeyRing,
    PublicKeyInfo,
    ReceiptError,
    Signer,
    load_or_create_signing_key,
    parse_public_key,
    parse_seed_hex,
    sign_receipt,
    verify_receipt,
)
from core.receipts.canonical import b64url_decode


def test_signer_basics():
    signer = Signer.from_seed(bytes(range(32)))
    assert len(signer.public_key) == 32
    assert b64url_decode(signer.key_id) == signer.public_key
    assert "=" not in signer.key_id
    assert Signer.from_seed(bytes.fromhex(signer.seed_hex())).key_id == signer.key_id
    assert signer.seed_hex() not in repr(signer)
    assert Signer.generate().key_id != Signer.generate().key_id
    with pytest.raises(ReceiptError, match="32 bytes"):
        Signer.from_seed(b"short")


@pytest.mark.parametrize("data", [b"", b"receipt", bytes(range(256)) * 4])
def test_signer_signature_is_the_ed25519_signature_of_the_seed(data):
    seed = bytes(range(32))
    signer = Signer.from_seed(seed)
    expected = SigningKey(seed).sign(data).signature
    assert signer.signature(data) == expected
    assert b64url_decode(signer.sign(data)["sig"]) == expected


def test_parse_seed_hex():
    assert parse_seed_hex("AB" * 32, name="X") == b"\xab" * 32
    assert parse_seed_hex(" " + "ab" * 32 + "\n", name="X") == b"\xab" * 32


@pytest.mark.parametrize("value", ["", "ab" * 31, "ab" * 33, "zz" * 32, None, b"ab" * 32])
def test_parse_seed_hex_errors_name_the_variable(value):
    with pytest.raises(ValueError, match=r"^AITBC_RECEIPT_SIGNING_KEY: must be 64 hex") as info:
        parse_seed_hex(value, name="AITBC_RECEIPT_SIGNING_KEY")  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidArgument)  # one error hierarchy
    if isinstance(value, str) and value:
        assert value not in str(info.value)  # a secret is never echoed


def test_parse_public_key_forms():
    signer = Signer.generate()
    for form in (signer.public_key, signer.key_id, signer.public_key.hex()):
        assert parse_public_key(form, name="k") == signer.public_key
    for bad in (b"x" * 31, "not-a-key!", signer.key_id + "A", 5):
        with pytest.raises(ReceiptError, match=r"^k"):
            parse_public_key(bad, name="k")  # type: ignore[arg-type]


def test_key_file_created_private_then_reused(tmp_path):
    path = tmp_path / "keys" / "nested" / "receipt.key"
    signer, created = load_or_create_signing_key(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert path.read_text().strip() == signer.seed_hex()
    assert [p.name for p in path.parent.iterdir()] == ["receipt.key"]  # no temp file left
    again, created = load_or_create_signing_key(path)
    assert not created
    assert again.key_id == signer.key_id


def test_key_file_in_an_existing_directory_leaves_it_alone(tmp_path):
    os.chmod(tmp_path, 0o755)
    _, created = load_or_create_signing_key(tmp_path / "k")
    assert created
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_with_loose_permissions_refused(tmp_path, mode):
    path = tmp_path / "k"
    load_or_create_signing_key(path)
    os.chmod(path, mode)
    with pytest.raises(ReceiptError, match=f"permissions {mode:04o} are too open") as info:
        load_or_create_signing_key(path)
    assert str(path) in str(info.value)


def test_key_file_stricter_permissions_accepted(tmp_path):
    path = tmp_path / "k"
    signer, _ = load_or_create_signing_key(path)
    os.chmod(path, 0o400)
    assert load_or_create_signing_key(path)[0].key_id == signer.key_id


@pytest.mark.parametrize("content", ["", "abc\n", "zz" * 32, "ab" * 32 + "ab"])
def test_key_file_with_bad_content_refused(tmp_path, content):
    path = tmp_path / "k"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ReceiptError, match=f"signing key file {path}: must be 64 hex"):
        load_or_create_signing_key(path)
    assert path.read_text() == content  # never overwritten


def test_key_file_that_is_a_directory_refused(tmp_path):
    (tmp_path / "k").mkdir(mode=0o700)
    with pytest.raises(ReceiptError, match="not a regular file"):
        load_or_create_signing_key(tmp_path / "k")


def test_public_key_info_rules():
    signer = Signer.generate()
    key = signer.public_key
    assert PublicKeyInfo(key).key_id == signer.key_id
    info = PublicKeyInfo(key, valid_from=10, valid_until=20)
    assert [info.valid_at(t) for t in (9, 10, 20, 21)] == [False, True, True, False]
    with pytest.raises(ReceiptError, match="valid_until: earlier"):
        PublicKeyInfo(key, valid_from=20, valid_until=10)
    with pytest.raises(ReceiptError, match="valid_from"):
        PublicKeyInfo(key, valid_from=-1)
    with pytest.raises(ReceiptError, match="32 bytes"):
        PublicKeyInfo(b"k")
    with pytest.raises(ReceiptError, match="alg"):
        PublicKeyInfo(key, alg="RSA")


def test_rotation_keeps_old_receipts_verifiable(make_receipt):
    old, new = Signer.generate(), Signer.generate()
    ring = KeyRing.single(old, valid_from=1_700_000_000)
    _, old_receipt = sign_receipt(make_receipt(completed_at=1_760_000_007), old)

    rotated = ring.rotate(new, at=1_760_000_100)
    assert rotated.current.key_id == new.key_id
    assert [k.key_id for k in rotated.retired] == [old.key_id]
    _, new_receipt = sign_receipt(make_receipt(completed_at=1_760_000_200), new)
    assert verify_receipt(old_receipt, keys=rotated).ok
    assert verify_receipt(new_receipt, keys=rotated).ok

    # A retired key cannot sign receipts completed after its retirement, nor before its start.
    _, late = sign_receipt(make_receipt(completed_at=1_760_000_101), old)
    (problem,) = verify_receipt(late, keys=rotated).problems
    assert problem.startswith(f"signature: key_id {old.key_id!r} is not valid at completed_at")
    _, early = sign_receipt(make_receipt(started_at=1, completed_at=1_600_000_000), old)
    assert not verify_receipt(early, keys=rotated).ok
    # The new key's window starts at the rotation.
    _, backdated = sign_receipt(make_receipt(completed_at=1_760_000_099), new)
    assert not verify_receipt(backdated, keys=rotated).ok


def test_keyring_json_round_trip():
    a, b, c = Signer.generate(), Signer.generate(), Signer.generate()
    ring = KeyRing.single(a, valid_from=100).rotate(b, at=200).rotate(c, at=300)
    published = json.loads(ring.to_json())
    assert published["keys"][0] == {
        "alg": "Ed25519",
        "key_id": c.key_id,
        "status": "current",
        "valid_from": 300,
        "valid_until": None,
    }
    assert [k["status"] for k in published["keys"]] == ["current", "retired", "retired"]
    back = KeyRing.from_json(ring.to_json())
    assert back.to_dict() == ring.to_dict()
    assert KeyRing.from_json(ring.to_dict()).to_dict() == ring.to_dict()
    assert a.key_id in back and len(back) == 3
    assert back.get(b.key_id).valid_until == 300
    assert back.resolve("nope", 1) == (None, "unknown key_id 'nope'")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "keys: not valid JSON"),
        ({"keys": {}}, "keys: expected an object"),
        ({"keys": [1]}, r"keys\[0\]: must be an object"),
        ({"keys": [{"alg": "RSA"}]}, r"keys\[0\].alg: 'RSA' not approved"),
        ({"keys": [{"alg": "Ed25519", "key_id": "AAAA"}]}, r"keys\[0\].key_id: not a 32-byte"),
        ({"keys": [{"alg": "Ed25519", "key_id": "@@"}]}, r"keys\[0\].key_id: not unpadded"),
        ({"keys": []}, "exactly one current key required, found 0"),
    ],
)
def test_keyring_from_json_errors_name_the_field(doc, message):
    with pytest.raises(ReceiptError, match=message):
        KeyRing.from_json(doc)


def test_keyring_from_json_entry_rules():
    key_id = Signer.generate().key_id
    entry = {"alg": "Ed25519", "key_id": key_id, "status": "current"}
    assert KeyRing.from_json({"keys": [entry]}).current.key_id == key_id
    with pytest.raises(ReceiptError, match=r"keys\[0\].status"):
        KeyRing.from_json({"keys": [{**entry, "status": "old"}]})
    with pytest.raises(ReceiptError, match=r"keys\[0\].valid_until: must be null"):
        KeyRing.from_json({"keys": [{**entry, "valid_until": "soon"}]})
    with pytest.raises(ReceiptError, match=r"keys\[0\].valid_until: earlier"):
        KeyRing.from_json({"keys": [{**entry, "valid_from": 5, "valid_until": 4}]})
    with pytest.raises(ReceiptError, match="listed twice"):
        KeyRing.from_json({"keys": [entry, {**entry, "status": "retired"}]})
    with pytest.raises(ReceiptError, match="found 2"):
        KeyRing.from_json({"keys": [entry, {**entry, "key_id": Signer.generate().key_id}]})
