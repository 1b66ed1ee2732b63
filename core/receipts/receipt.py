"""Building a receipt document and signing it once into its exact stored bytes."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.receipts.canonical import (
    UNSIGNED_KEYS,
    canonical_bytes,
    canonical_json,
    content_hash,
    drop_nulls,
    money,
)
from core.receipts.claims import claim_problems
from core.receipts.errors import ReceiptError
from core.receipts.fields import VERSION, check_fields, is_int
from core.receipts.keys import Signer

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def _sig_json(sig: dict[str, str]) -> str:
    # Sorted compact JSON of a signature object; its values are base64url and "Ed25519",
    # which need no escaping, so formatting beats a generic encoder on this hot path.
    return f'{{"alg":"{sig["alg"]}","key_id":"{sig["key_id"]}","sig":"{sig["sig"]}"}}'


def _amount(value: object, name: str) -> int | float:
    # Decimals go through money() rounding; plain ints/floats are taken as already rounded.
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReceiptError.field(name, "must be a number (use money(Decimal))")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReceiptError.field(name, "must be finite")
    return value


_JSON_SCALARS = frozenset({str, int, bool, type(None)})


def _check_json_value(value: object, where: str) -> None:
    """Metadata must be plain JSON: str keys, finite numbers, no exotic types."""
    kind = type(value)
    if kind in _JSON_SCALARS:  # exact types first: isinstance against the ABCs is slow here
        return
    if kind is dict or isinstance(value, Mapping):
        for k, v in value.items():
            if type(k) is not str and not isinstance(k, str):
                raise ReceiptError.field(where, f"key {k!r} is not a string")
            _check_json_value(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json_value(v, f"{where}[{i}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ReceiptError.field(where, "must be a finite number")
    elif not isinstance(value, str | int | bool):
        raise ReceiptError.field(where, f"{type(value).__name__} is not a JSON value")


def build_receipt(
    *,
    job_id: str,
    provider: str,
    client: str,
    units: int | float | Decimal,
    unit_type: str,
    price: int | float | Decimal,
    model: str,
    payload: Mapping | bytes,
    started_at: int,
    completed_at: int,
    artifact_hash: str,
    coordinator_id: str,
    chain_id: int | str,
    metadata: Mapping | None = None,
    receipt_id: str | None = None,
    nonce: str | None = None,
    duration_ms: int | None = None,
    miner_claim: Mapping | None = None,
) -> dict:
    """An unsigned receipt (version "1.0"); raises ReceiptError naming every bad field.

    `payload` is hashed (canonical JSON for a mapping, raw bytes otherwise) into
    `prompt_hash` and never stored. `duration_ms` defaults to the whole-second difference.
    `miner_claim` (already checked with verify_claim) lands in `metadata.miner_claim` and must
    name this job, artifact and provider.
    """
    if isinstance(payload, Mapping):
        prompt_hash = content_hash(canonical_bytes(payload, exclude=()))
    elif isinstance(payload, bytes | bytearray):
        prompt_hash = content_hash(bytes(payload))
    else:
        raise ReceiptError.field("payload", "must be a JSON object or bytes")
    if not isinstance(artifact_hash, str) or not _SHA256.fullmatch(artifact_hash):
        raise ReceiptError.field("artifact_hash", 'must be "sha256:<64 lowercase hex>"')
    if duration_ms is None and is_int(started_at) and is_int(completed_at):
        duration_ms = max(0, completed_at - started_at) * 1000
    meta = dict(metadata or {})
    _check_json_value(meta, "metadata")
    if miner_claim is None:
        miner_claim = meta.get("miner_claim")  # passed inside metadata: same checks
    if miner_claim is not None:
        meta["miner_claim"] = _claim_for(miner_claim, job_id, artifact_hash, provider)
    if receipt_id is None or nonce is None:
        # One draw of 32 random bytes for both ids: each is still 16 bytes of its own.
        token = secrets.token_hex(32)
        receipt_id = f"rcpt-{token[:32]}" if receipt_id is None else receipt_id
        nonce = token[32:] if nonce is None else nonce
    doc = {
        "version": VERSION,
        "receipt_id": receipt_id,
        "job_id": job_id,
        "provider": provider,
        "client": client,
        "units": _amount(units, "units"),
        "unit_type": unit_type,
        "price": _amount(price, "price"),
        "model": model,
        "prompt_hash": prompt_hash,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": duration_ms,
        "artifact_hash": artifact_hash,
        "coordinator_id": coordinator_id,
        "nonce": nonce,
        "chain_id": chain_id,
    }
    if meta:
        doc["metadata"] = meta
    problems = check_fields(doc)
    if problems:
        raise ReceiptError.from_problems("receipt", problems)
    return doc


def _claim_for(claim_doc: Mapping, job_id: str, artifact_hash: str, provider: str) -> dict:
    if not isinstance(claim_doc, Mapping) or set(claim_doc) != {"claim", "signature"}:
        raise ReceiptError.field("miner_claim", "must be {'claim': ..., 'signature': ...}")
    claim = claim_doc["claim"]
    problems = claim_problems(claim)
    if problems:
        raise ReceiptError.from_problems("miner_claim", problems)
    for field, expected in (("job_id", job_id), ("artifact_hash", artifact_hash)):
        if claim[field] != expected:
            raise ReceiptError.field(f"miner_claim.{field}", "does not match the receipt")
    if claim["miner_id"] != provider:
        raise ReceiptError.field("miner_claim.miner_id", "is not the receipt's provider")
    return {"claim": dict(claim), "signature": dict(claim_doc["signature"])}


def sign_receipt(
    doc: Mapping, signer: Signer, attester: Signer | None = None
) -> tuple[dict, bytes]:
    """Sign `doc` once; returns (signed document, the exact JSON bytes to store and serve).

    The bytes are the canonical body followed by "attestations" and "signature"; verifiers
    recompute the canonical body from the parsed document. The returned dict equals a parse of
    those bytes and shares no mutable value with `doc`.
    """
    if any(key in doc for key in UNSIGNED_KEYS):
        raise ReceiptError("receipt is already signed: a receipt is signed exactly once")
    problems = check_fields(doc)
    if problems:
        raise ReceiptError.from_problems("receipt", problems)
    signature, attestations, stored = _signed(doc, signer, attester)
    # The signed dict mirrors the bytes without a re-parse: top-level values are scalars (the
    # field rules ensure it) and drop_nulls copies the only nested value, metadata.
    signed = {k: v for k, v in doc.items() if v is not None}
    if "metadata" in signed:
        signed["metadata"] = drop_nulls(signed["metadata"])
    signed["attestations"] = attestations
    signed["signature"] = signature
    return signed, stored


def issue_receipt(
    signer: Signer, attester: Signer | None = None, **fields: Any
) -> tuple[str, bytes]:
    """build_receipt(**fields) signed at once: (receipt_id, the exact JSON bytes to store).

    The same bytes as sign_receipt(build_receipt(**fields), ...) gives, for the caller that only
    stores them (the coordinator, once per completed job): the document just built is checked
    once, not again by sign_receipt, and no signed dict is made.
    """
    doc = build_receipt(**fields)
    return doc["receipt_id"], _signed(doc, signer, attester)[2]


def _signed(
    doc: Mapping, signer: Signer, attester: Signer | None
) -> tuple[dict[str, str], list[dict[str, str]], bytes]:
    """(signature, attestations, stored bytes) of a checked, unsigned document."""
    body = canonical_json(doc)
    message = body.encode("ascii")
    signature = signer.sign(message)
    attestations = [attester.sign(message)] if attester is not None else []
    atts = ",".join(map(_sig_json, attestations))
    stored = f'{body[:-1]},"attestations":[{atts}],"signature":{_sig_json(signature)}}}'.encode(
        "ascii"
    )
    return signature, attestations, stored
