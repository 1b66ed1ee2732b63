"""`aitbc receipt verify|get|list|keys`: files built with core.receipts, and a live coordinator."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from client.cli import app as cli_app
from core.receipts import (
    KeyRing,
    PublicKeyInfo,
    Signer,
    build_receipt,
    canonical_bytes,
    sign_claim,
    sign_receipt,
)

from .conftest import one_line_error

JOB_ID = "job_" + "7" * 32
COMPLETED_AT = 1_800_000_100
SIGNER = Signer.from_seed(b"\x01" * 32)
ATTESTER = Signer.from_seed(b"\x02" * 32)
MINER = Signer.from_seed(b"\x03" * 32)
STRANGER = Signer.from_seed(b"\x04" * 32)


def receipt_doc(**overrides) -> dict:
    claim = sign_claim(
        MINER,
        job_id=JOB_ID,
        lease_id="lease_" + "1" * 32,
        artifact_hash="sha256:" + "ab" * 32,
        started_at=(COMPLETED_AT - 5) * 1000,
        completed_at=COMPLETED_AT * 1000,
        miner_id="m1",
    )
    fields = dict(
        job_id=JOB_ID,
        provider="m1",
        client="alice",
        units=Decimal("5"),
        unit_type="gpu_seconds",
        price=Decimal("2.5"),
        model="echo",
        payload={"text": "hi"},
        started_at=COMPLETED_AT - 5,
        completed_at=COMPLETED_AT,
        artifact_hash="sha256:" + "ab" * 32,
        coordinator_id="coordinator-1",
        chain_id=1,
        miner_claim=claim,
    )
    return build_receipt(**{**fields, **overrides})


@pytest.fixture
def good(tmp_path):
    _, stored = sign_receipt(receipt_doc(), SIGNER, ATTESTER)
    path = tmp_path / "receipt.json"
    path.write_bytes(stored)
    return path


def run(*args: str, input: bytes | None = None):
    # Offline: pinned keys and files need no coordinator (the endpoint is unreachable).
    env = {"AITBC_ENDPOINT": "127.0.0.1:1", "AITBC_API_KEY": None}
    return CliRunner().invoke(cli_app, ["receipt", *args], env=env, input=input)


def pins(*extra: str) -> list[str]:
    return ["--key", SIGNER.key_id, *extra]


def test_good_receipt_with_pinned_keys(good):
    r = run(
        "verify", str(good), *pins("--attestation-key", ATTESTER.key_id),
        "--miner-key", f"m1={MINER.key_id}",
    )  # fmt: skip
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("OK receipt rcpt-") and f"job {JOB_ID}" in r.stdout
    assert "attestations: 1 verified" in r.stdout
    assert "miner claim: verified (miner identity)" in r.stdout
    r = run("verify", str(good), *pins(), "--json")
    report = json.loads(r.stdout)
    assert r.exit_code == 0 and report["ok"] is True and report["problems"] == []
    assert report["key_id"] == SIGNER.key_id and report["attestations_checked"] is False
    assert report["miner_claim"].startswith("verified (integrity")
    # a hex public key is accepted as well as the base64url key id
    assert run("verify", str(good), "--key", SIGNER.public_key.hex()).exit_code == 0
    # stdin
    r = run("verify", "-", *pins(), input=good.read_bytes())
    assert r.exit_code == 0 and r.stdout.startswith("OK")


def test_tampered_receipt_fails_naming_the_signature(good, tmp_path):
    tampered = tmp_path / "tampered.json"
    raw = good.read_bytes()
    assert b'"price":2.5' in raw
    tampered.write_bytes(raw.replace(b'"price":2.5', b'"price":0.5'))
    r = run("verify", str(tampered), *pins("--attestation-key", ATTESTER.key_id))
    assert r.exit_code == 1
    assert r.stdout.startswith("FAILED receipt")
    assert "  - signature: does not verify" in r.stdout
    assert "  - attestation[0]: does not verify" in r.stdout
    err = one_line_error(r)
    assert "does not verify: signature: does not verify" in err
    report = json.loads(run("verify", str(tampered), *pins(), "--json").stdout)
    assert report["ok"] is False and report["problems"] == ["signature: does not verify"]


def test_wrong_keys_and_claims_are_named(good, tmp_path):
    r = run("verify", str(good), "--key", STRANGER.key_id)
    assert r.exit_code == 1 and f"signature: unknown key_id {SIGNER.key_id!r}" in r.stdout
    r = run("verify", str(good), *pins("--attestation-key", STRANGER.key_id))
    assert r.exit_code == 1 and "attestation[0]: unknown key_id" in r.stdout
    r = run("verify", str(good), *pins(), "--miner-key", f"m1={STRANGER.key_id}")
    assert r.exit_code == 1 and "miner_claim:" in r.stdout
    # a claim naming another job than the receipt, signed correctly by the coordinator
    doc = receipt_doc()
    doc["metadata"]["miner_claim"]["claim"]["job_id"] = "job_" + "8" * 32
    body = canonical_bytes(doc)
    forged = {**doc, "attestations": [], "signature": SIGNER.sign(body)}
    path = tmp_path / "claim.json"
    path.write_text(json.dumps(forged))
    r = run("verify", str(path), *pins())
    assert r.exit_code == 1
    assert "miner_claim: claim.job_id does not match the receipt's job_id" in r.stdout


def test_field_rules_are_checked_even_when_signed(tmp_path):
    doc = receipt_doc()
    doc["units"] = -1  # signed as is, so only the field rules can catch it
    doc["version"] = "9.9"
    signed = {**doc, "attestations": [], "signature": SIGNER.sign(canonical_bytes(doc))}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(signed))
    report = json.loads(run("verify", str(path), *pins(), "--json").stdout)
    assert report["ok"] is False
    assert not any(p.startswith("signature") for p in report["problems"])
    assert any(p.startswith("units") for p in report["problems"])
    assert any(p.startswith("version") for p in report["problems"])
    path.write_text("{not json")
    r = run("verify", str(path), *pins())
    assert r.exit_code == 1 and "receipt: not valid JSON" in r.stdout


def test_keys_file_honours_validity_windows(good, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(KeyRing.single(SIGNER, valid_from=COMPLETED_AT - 100).to_json())
    r = run("verify", str(good), "--keys-file", str(keys))
    assert r.exit_code == 0 and f"keys file {keys}" in r.stdout
    rotated = KeyRing(
        PublicKeyInfo(STRANGER.public_key, valid_from=COMPLETED_AT - 10),
        [PublicKeyInfo(SIGNER.public_key, valid_from=0, valid_until=COMPLETED_AT - 10)],
    )
    keys.write_text(rotated.to_json())
    r = run("verify", str(good), "--keys-file", str(keys))
    assert r.exit_code == 1 and f"is not valid at completed_at {COMPLETED_AT}" in r.stdout
    # the /v1/keys form (purpose, RFC 3339 times)
    keys.write_text(
        json.dumps(
            {
                "coordinator_id": "c1",
                "keys": [
                    {"key_id": SIGNER.key_id, "alg": "Ed25519", "purpose": "signing",
                     "valid_from": "2020-01-01T00:00:00Z"},
                    {"key_id": ATTESTER.key_id, "alg": "Ed25519", "purpose": "attestation",
                     "valid_from": "2020-01-01T00:00:00Z"},
                ],
            }
        )
    )  # fmt: skip
    r = run("verify", str(good), "--keys-file", str(keys))
    assert r.exit_code == 0 and "attestations: 1 verified" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("verify", "nothing-here"), "neither a file nor a job id"),
        (("verify", "{good}", "--keys-file", "{good}", "--key", SIGNER.key_id), "exclusive"),
        (("verify", "{good}", "--keys-file", "/nonexistent/keys.json"), "cannot read"),
        (("verify", "{good}", "--keys-file", "{good}"), "'keys' list"),
        (("verify", "{good}", "--key", "short"), "--key"),
        (("verify", "{good}", "--key", SIGNER.key_id, "--miner-key", "m1"), "MINER_ID=KEY"),
        (("verify", "{good}", "--attestation-key", ATTESTER.key_id), "needs --key"),
    ],
)
def test_usage_errors_exit_2(good, args, needle):
    r = run(*(a.replace("{good}", str(good)) for a in args))
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert needle in one_line_error(r)


def test_published_keys_need_a_reachable_coordinator(good):
    r = run("verify", str(good))
    assert r.exit_code == 1 and "cannot reach the coordinator at 127.0.0.1:1" in one_line_error(r)


def test_live_receipt_get_verify_and_keys(coord, cli, tmp_path):
    miner = coord.miner()
    job_id = json.loads(cli("jobs", "submit", "echo", "--json").stdout)["job_id"]
    r = cli("receipt", "get", job_id)
    assert r.exit_code == 1 and "has no receipt" in one_line_error(r)
    done_id, ack = coord.complete(miner, {"v": 1})
    assert done_id == job_id and ack.accepted
    r = cli("receipt", "get", job_id)
    assert r.exit_code == 0 and r.stdout_bytes == ack.receipt.encode()
    out = tmp_path / "r.json"
    r = cli("receipt", "get", job_id, "--output", str(out), "--json")
    assert r.exit_code == 0 and out.read_bytes() == ack.receipt.encode()
    assert json.loads(r.stdout)["bytes"] == len(ack.receipt)
    # by job id, and from the saved file, against the published keys
    for source in (job_id, str(out)):
        r = cli("receipt", "verify", source)
        assert r.exit_code == 0, (r.stdout, r.stderr)
        assert r.stdout.startswith("OK") and "attestations: 1 verified" in r.stdout
        assert "published by" in r.stdout
    keys_json = cli("receipt", "keys", "--json", who=None)  # public: no key needed
    assert keys_json.exit_code == 0
    published = json.loads(keys_json.stdout)
    assert {k["purpose"] for k in published["keys"]} == {"signing", "attestation"}
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(keys_json.stdout)
    r = run("verify", str(out), "--keys-file", str(keys_file))  # offline
    assert r.exit_code == 0 and "attestations: 1 verified" in r.stdout
    r = cli("receipt", "keys")
    assert r.exit_code == 0 and published["keys"][0]["key_id"] in r.stdout
    history = json.loads(cli("receipt", "list", job_id, "--json").stdout)["receipts"]
    assert [h["document"] for h in history] == [ack.receipt]
    r = cli("receipt", "list", job_id)
    assert r.exit_code == 0 and history[0]["receipt_id"] in r.stdout
    # tampering with the fetched bytes is caught against the published keys too
    doc = json.loads(out.read_bytes())
    doc["client"] = "mallory"
    out.write_text(json.dumps(doc))
    r = cli("receipt", "verify", str(out))
    assert r.exit_code == 1 and "signature: does not verify" in r.stdout
