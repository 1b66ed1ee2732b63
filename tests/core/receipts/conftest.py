"""Receipt test fixtures: deterministic keys, a receipt factory and the AITBC vector."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from core.receipts import Signer, build_receipt, content_hash, sign_claim

# The vector comes from the original spec and lives outside the repository, beside it.
VECTOR_PATH = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "conformance"
    / "receipt_vector_aitbc.json"
)

STARTED = 1_760_000_000
COMPLETED = 1_760_000_007


def seeded_signer(label: str) -> Signer:
    return Signer.from_seed(hashlib.sha256(label.encode()).digest())


@pytest.fixture(scope="session")
def vector() -> dict:
    if not VECTOR_PATH.is_file():
        pytest.fail(
            f"conformance vector missing: {VECTOR_PATH.resolve()} (the repository's sibling "
            "shared/ dir must hold conformance/receipt_vector_aitbc.json; CI clones it beside "
            "the repo)"
        )
    return json.loads(VECTOR_PATH.read_text())


@pytest.fixture(scope="session")
def coordinator() -> Signer:
    return seeded_signer("coordinator")


@pytest.fixture(scope="session")
def attester() -> Signer:
    return seeded_signer("attester")


@pytest.fixture(scope="session")
def miner() -> Signer:
    return seeded_signer("miner-7")


def make_claim(miner: Signer, **overrides) -> dict:
    fields = {
        "job_id": "job-1",
        "lease_id": "lease-1",
        "artifact_hash": content_hash(b"result"),
        "started_at": STARTED * 1000 + 250,
        "completed_at": COMPLETED * 1000 + 100,
        "miner_id": "miner-7",
    }
    fields.update(overrides)
    return sign_claim(miner, **fields)


def make_receipt(*, miner: Signer | None = None, **overrides) -> dict:
    fields = {
        "job_id": "job-1",
        "provider": "miner-7",
        "client": "client-3",
        "units": 7,
        "unit_type": "gpu_seconds",
        "price": 0.000875,
        "model": "openai/whisper-large-v3",
        "payload": {"service": "whisper", "audio_url": "https://example.test/a.wav"},
        "started_at": STARTED,
        "completed_at": COMPLETED,
        "artifact_hash": content_hash(b"result"),
        "coordinator_id": "coord-test",
        "chain_id": 12345,
        "metadata": {"region": "eu-west", "attempt": 1, "gpu": {"name": "RTX 4090"}},
        "receipt_id": "rcpt-test-1",
        "nonce": "00ff00ff",
    }
    if miner is not None:
        fields["miner_claim"] = make_claim(miner)
    fields.update(overrides)
    return build_receipt(**fields)


@pytest.fixture(name="make_receipt")
def make_receipt_fixture():
    """build_receipt() with test defaults; keyword overrides replace them."""
    return make_receipt


@pytest.fixture(name="make_claim")
def make_claim_fixture():
    """sign_claim() for job-1 with test defaults; keyword overrides replace them."""
    return make_claim
