"""Miner co-signature: the claim a miner signs with its result, and its verification.

Claim times are integer unix **milliseconds** measured by the miner (`started_at`,
`completed_at`): receipts round to seconds, and sub-second jobs need finer evidence. Values
below 10**11 (i.e. before 1973 in ms) are refused as "looks like seconds".
"""

from __future__ import annotations

from collections.abc import Mapping

from core.receipts.canonical import b64url_encode, canonical_bytes
from core.receipts.errors import ReceiptError
from core.receipts.fields import is_int
from core.receipts.keys import Signer, check_signature, signature_shape

CLAIM_FIELDS = ("job_id", "lease_id", "artifact_hash", "started_at", "completed_at", "miner_id")
_MIN_MS = 10**11


def claim_problems(claim: object) -> list[str]:
    """Structural problems of a bare claim object, as "claim.<field>: <what>"."""
    if not isinstance(claim, Mapping):
        return ["claim: must be an object"]
    problems = [f"claim.{k}: unexpected field" for k in sorted(set(claim) - set(CLAIM_FIELDS))]
    for name in ("job_id", "lease_id", "miner_id"):
        value = claim.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"claim.{name}: must be a non-empty string")
    digest = claim.get("artifact_hash")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) <= 7:
        problems.append('claim.artifact_hash: must be "sha256:<hex digest>"')
    times_ok = True
    for name in ("started_at", "completed_at"):
        value = claim.get(name)
        if not is_int(value) or value < 0:
            problems.append(f"claim.{name}: must be a non-negative integer (unix milliseconds)")
            times_ok = False
        elif value < _MIN_MS:
            problems.append(f"claim.{name}: looks like seconds; claim times are unix milliseconds")
            times_ok = False
    if times_ok and claim["completed_at"] < claim["started_at"]:
        problems.append("claim.completed_at < claim.started_at")
    return problems


def sign_claim(
    signer: Signer,
    *,
    job_id: str,
    lease_id: str,
    artifact_hash: str,
    started_at: int,
    completed_at: int,
    miner_id: str,
) -> dict:
    """The miner's signed claim: {"claim": {...}, "signature": {"alg","key_id","sig"}}."""
    claim = {
        "job_id": job_id,
        "lease_id": lease_id,
        "artifact_hash": artifact_hash,
        "started_at": started_at,
        "completed_at": completed_at,
        "miner_id": miner_id,
    }
    problems = claim_problems(claim)
    if problems:
        raise ReceiptError.from_problems("claim", problems)
    return {"claim": claim, "signature": signer.sign(canonical_bytes(claim))}


def verify_claim(claim_doc: object, public_key: bytes) -> list[str]:
    """Problems of a signed claim checked against the miner's public key (empty when valid).

    `public_key` is the key the miner presented at hello/registration: a claim signed by any
    other key, or with an altered field, is rejected.
    """
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise ReceiptError("public_key: an Ed25519 public key is 32 bytes")
    if not isinstance(claim_doc, Mapping):
        return ["claim: must be an object with 'claim' and 'signature'"]
    problems = [
        f"claim: unexpected field {k!r}" for k in sorted(set(claim_doc) - {"claim", "signature"})
    ]
    problems += claim_problems(claim_doc.get("claim"))
    sig_doc = claim_doc.get("signature")
    shape = signature_shape(sig_doc)
    if shape:
        return [*problems, f"claim signature: {shape}"]
    if sig_doc["key_id"] != b64url_encode(public_key):
        return [*problems, "claim signature: key_id is not the miner's registered key"]
    if isinstance(claim_doc.get("claim"), Mapping):
        try:
            data = canonical_bytes(claim_doc["claim"])
        except ReceiptError as exc:
            return [*problems, f"claim: {exc.message}"]
        bad = check_signature(sig_doc, data, public_key)
        if bad:
            problems.append(f"claim signature: {bad}")
    return problems
