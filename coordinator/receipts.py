"""Receipt keys and issuing: every completed job gets one signed (and attested) receipt.

Keys: RECEIPT_SIGNING_KEY_HEX, or a key generated once under the data dir (0600). The public
key history lives in <data_dir>/receipt-keys.json: starting with a different signing key retires
the previous one (its validity window closes now), so receipts it signed keep verifying.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from coordinator.domain.model import Job
from coordinator.store.base import ReceiptOrder
from core import errors
from core.receipts import (
    KeyRing,
    PublicKeyInfo,
    Signer,
    load_or_create_signing_key,
    money,
    parse_public_key,
    parse_seed_hex,
    verify_claim,
)

log = logging.getLogger(__name__)
HISTORY_FILE = "receipt-keys.json"
_MICRO = Decimal("0.000001")


def _ring(entries: list[dict[str, Any]]) -> KeyRing:
    infos = [
        PublicKeyInfo(
            parse_public_key(e["key_id"], name="key_id"), e.get("valid_from"), e.get("valid_until")
        )
        for e in entries
    ]
    return KeyRing(infos[-1], reversed(infos[:-1]))


def _track(
    history: dict[str, list[dict[str, Any]]], purpose: str, signer: Signer, now: int
) -> bool:
    """Make `signer` the current key of `purpose`; returns True when the history changed."""
    entries = history.setdefault(purpose, [])
    if entries and entries[-1]["key_id"] == signer.key_id:
        return False
    if entries:
        entries[-1]["valid_until"] = now
    if any(e["key_id"] == signer.key_id for e in entries):
        raise errors.FailedPrecondition(
            f"{purpose} key {signer.key_id} was retired; it cannot become current again"
        )
    entries.append({"key_id": signer.key_id, "valid_from": now, "valid_until": None})
    return True


@dataclass
class ReceiptKeys:
    signer: Signer
    attester: Signer | None
    signing: KeyRing
    attestation: KeyRing | None

    @classmethod
    def load(
        cls, data_dir: Path, *, signing_hex: str, attestation_hex: str, now: int | None = None
    ) -> ReceiptKeys:
        now = int(now if now is not None else time.time())
        if signing_hex:
            signer = Signer.from_seed(parse_seed_hex(signing_hex, name="RECEIPT_SIGNING_KEY_HEX"))
        else:
            signer, created = load_or_create_signing_key(data_dir / "receipt-signing.key")
            if created:
                log.warning("created a receipt signing key", extra={"key_id": signer.key_id})
        attester = (
            Signer.from_seed(parse_seed_hex(attestation_hex, name="RECEIPT_ATTESTATION_KEY_HEX"))
            if attestation_hex
            else None
        )
        path = data_dir / HISTORY_FILE
        history = json.loads(path.read_text()) if path.exists() else {}
        changed = _track(history, "signing", signer, now)
        if attester is not None:
            changed |= _track(history, "attestation", attester, now)
        if changed:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(history, indent=2) + "\n")
            os.replace(tmp, path)
        log.info("receipt signing key", extra={"key_id": signer.key_id})
        return cls(
            signer=signer,
            attester=attester,
            signing=_ring(history["signing"]),
            attestation=_ring(history["attestation"]) if history.get("attestation") else None,
        )


class ReceiptIssuer:
    def __init__(self, keys: ReceiptKeys, *, coordinator_id: str, chain_id: int):
        self.keys = keys
        self.coordinator_id = coordinator_id
        self.chain_id = chain_id
        # What a ReceiptOrder carries to the store's writer, which signs there.
        self._seeds = (
            bytes.fromhex(keys.signer.seed_hex()),
            bytes.fromhex(keys.attester.seed_hex()) if keys.attester is not None else None,
        )

    @staticmethod
    def check_claim(
        claim: dict[str, Any] | None,
        *,
        public_key: str,
        job: Job,
        lease_id: str,
        sha256: str,
        miner_id: str,
    ) -> None:
        """A miner that announced a key must sign its result; anything off rejects the result."""
        if not public_key:
            return
        if claim is None:
            raise errors.InvalidArgument(
                "claim: this miner announced a public key: the result must carry its signed claim",
                [("claim", "required")],
                reason="bad_claim",
            )
        problems = verify_claim(claim, parse_public_key(public_key, name="public_key"))
        c = claim.get("claim", {})
        expected = {
            "job_id": job.job_id,
            "lease_id": lease_id,
            "artifact_hash": f"sha256:{sha256}",
            "miner_id": miner_id,
        }
        problems += [
            f"claim.{k}: does not match ({c.get(k)!r})"
            for k, v in expected.items()
            if c.get(k) != v
        ]
        if problems:
            raise errors.InvalidArgument(
                "miner claim rejected: " + "; ".join(problems),
                [("claim", p) for p in problems],
                reason="bad_claim",
            )

    def order(self, job: Job, claim: dict[str, Any] | None) -> ReceiptOrder:
        """The receipt of a COMPLETED job, to be signed by the store as it writes the job."""
        assert job.result is not None and job.finished_at is not None
        started = (
            job.started_at if job.started_at is not None else job.assigned_at or job.finished_at
        )
        seconds = Decimal(str(max(0.0, job.finished_at - started))).quantize(_MICRO)
        unit_price = job.unit_price if job.unit_price is not None else Decimal(0)
        model = job.parameters.get("model")
        fields = dict(
            job_id=job.job_id,
            provider=job.miner_id,
            client=job.client_id,
            units=money(seconds),
            unit_type=job.unit_type or "gpu_seconds",
            price=money(seconds * unit_price),
            model=model if isinstance(model, str) else job.service,
            payload={"service": job.service, "parameters": job.parameters},
            started_at=int(started),
            completed_at=int(job.finished_at),
            duration_ms=round((job.finished_at - started) * 1000),
            artifact_hash=f"sha256:{job.result.sha256}",
            coordinator_id=self.coordinator_id,
            chain_id=self.chain_id,
            metadata={
                "service": job.service,
                "attempt": job.attempt,
                "unit_price": str(unit_price),
            },
            miner_claim=claim,
        )
        return ReceiptOrder(job.job_id, job.finished_at, fields, *self._seeds)
