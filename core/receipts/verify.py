"""Receipt verification: fields, coordinator signature, attestations, miner co-signature."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.receipts.canonical import b64url_decode, canonical_bytes
from core.receipts.claims import verify_claim
from core.receipts.errors import ReceiptError
from core.receipts.fields import check_fields, is_int
from core.receipts.keyring import KeyRing
from core.receipts.keys import check_signature, signature_shape

Keys = KeyRing | Mapping[str, bytes]


@dataclass(slots=True)
class VerificationResult:
    """`ok` when `problems` is empty; each problem reads "<what>: <why>"."""

    problems: list[str] = field(default_factory=list)
    receipt: dict | None = field(default=None, repr=False)
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # Parsers disagree on which duplicate wins; a signed document must not be ambiguous.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup!r}")
    return doc


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Prebuilt decoders: json.loads with keyword arguments builds a new decoder on every call.
_strict_decode = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
).decode
_plain_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def _parse(raw: bytes) -> object:
    """Strict parse: UTF-8 only (RFC 8259), no duplicate keys, no NaN/Infinity."""
    return _strict_decode(raw.decode("utf-8"))


def _resolve(keys: Keys, key_id: str, completed_at: int | None) -> tuple[bytes | None, str | None]:
    if isinstance(keys, KeyRing):
        return keys.resolve(key_id, completed_at)
    public = keys.get(key_id)
    if public is None:
        return None, f"unknown key_id {key_id!r}"
    if not isinstance(public, bytes) or len(public) != 32:
        # A configuration error, not a bad receipt: "does not verify" would hide it.
        raise ReceiptError(f"keys[{key_id!r}]: an Ed25519 public key is 32 bytes")
    return public, None


def verify_receipt(
    doc_or_bytes: Mapping | bytes | bytearray | memoryview | str,
    *,
    keys: Keys,
    attestation_keys: Keys | None = None,
    require_attestation: bool = False,
    claim_keys: Mapping[str, bytes] | None = None,
) -> VerificationResult:
    """Check a signed receipt; never raises for a bad receipt, reports every problem.

    - `keys`: coordinator keys (a KeyRing honours validity windows; a mapping is key_id → key).
    - Attestations are checked only when `attestation_keys` is given; then each must verify.
      `require_attestation` demands at least one verified attestation.
    - `metadata.miner_claim`, when present, must verify and name this job, artifact and
      provider. With `claim_keys` (miner_id → registered public key) the claim must be signed
      by that miner's key; without it the claim is only checked against its own key_id
      (integrity, not identity).

    Bytes in the layout sign_receipt() stores are checked against their own signed prefix,
    without re-serializing; that path only answers when everything verifies (a signature by
    a trusted key over the prefix proves it canonical, as our signers only sign canonical
    bytes). Any other input, or any problem, takes the general path: parse, canonicalize,
    verify, so its problems are the definitive ones.
    """
    checks = (keys, attestation_keys, require_attestation, claim_keys)
    if isinstance(doc_or_bytes, str):
        try:
            doc_or_bytes = doc_or_bytes.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates cannot be the signed bytes
            return VerificationResult([f"receipt: not valid JSON ({exc.reason})"])
    if isinstance(doc_or_bytes, bytes | bytearray | memoryview):
        raw = bytes(doc_or_bytes)
        stored = _split_stored(raw)
        if stored is not None:
            fast = _verify_doc(stored[1], stored[0], *checks)
            if fast.ok:
                return fast
        try:
            doc = _parse(raw)
        except (ValueError, RecursionError) as exc:
            return VerificationResult([f"receipt: not valid JSON ({exc})"])
    else:
        doc = doc_or_bytes
    if not isinstance(doc, Mapping):
        return VerificationResult(["receipt: must be a JSON object"])
    try:
        message = canonical_bytes(doc)
    except ReceiptError as exc:
        return VerificationResult([f"receipt: {exc.message}"], dict(doc))
    return _verify_doc(doc, message, *checks)


_TAIL = b',"attestations":'


def _split_stored(raw: bytes) -> tuple[bytes, dict] | None:
    """(signed prefix, document) when `raw` is body + attestations + signature, else None."""
    # In compact ASCII JSON `,"` cannot occur inside a string (a quote there is escaped), so
    # the last `,"attestations":` is a key; a nested one fails the key checks below.
    cut = raw.rfind(_TAIL)
    if cut <= 1 or raw[:1] != b"{":
        return None
    body = raw[:cut] + b"}"
    try:
        # No duplicate check on the body: it must verify as signed, and signers emit
        # canonical JSON (no duplicates); any failure re-runs the strict general path.
        head = _plain_decode(body.decode("utf-8"))
        tail = _parse(b"{" + raw[cut + 1 :])
    except (ValueError, RecursionError):
        return None
    if not isinstance(head, dict) or not isinstance(tail, dict):
        return None
    if tail.keys() != {"attestations", "signature"} or not tail.keys().isdisjoint(head):
        return None
    head.update(tail)
    return body, head


def _verify_doc(
    doc: Mapping,
    message: bytes,
    keys: Keys,
    attestation_keys: Keys | None,
    require_attestation: bool,
    claim_keys: Mapping[str, bytes] | None,
) -> VerificationResult:
    result = VerificationResult(check_fields(doc), doc if isinstance(doc, dict) else dict(doc))
    problems = result.problems
    completed_at = doc.get("completed_at")
    completed_at = completed_at if is_int(completed_at) else None
    sig_doc = doc.get("signature")
    shape = signature_shape(sig_doc)
    if shape:
        problems.append(f"signature: {shape}")
    else:
        result.key_id = sig_doc["key_id"]
        public, why = _resolve(keys, sig_doc["key_id"], completed_at)
        bad = why or check_signature(sig_doc, message, public)
        if bad:
            problems.append(f"signature: {bad}")
    _check_attestations(doc, message, attestation_keys, require_attestation, completed_at, problems)
    metadata = doc.get("metadata")
    if isinstance(metadata, Mapping) and "miner_claim" in metadata:
        problems.extend(_check_miner_claim(doc, metadata["miner_claim"], claim_keys))
    return result


def _check_attestations(
    doc: Mapping,
    message: bytes,
    attestation_keys: Keys | None,
    required: bool,
    completed_at: int | None,
    problems: list[str],
) -> None:
    attestations = doc.get("attestations", [])
    if not isinstance(attestations, list):
        problems.append("attestations: must be a list")
        return
    if attestation_keys is None:
        if required:
            problems.append("attestation: required but no attestation keys were given")
        return
    verified = 0
    for i, att in enumerate(attestations):
        shape = signature_shape(att)
        if shape:
            problems.append(f"attestation[{i}]: {shape}")
            continue
        public, why = _resolve(attestation_keys, att["key_id"], completed_at)
        bad = why or check_signature(att, message, public)
        if bad:
            problems.append(f"attestation[{i}]: {bad}")
        else:
            verified += 1
    if required and not attestations:
        problems.append("attestation: missing (required)")
    elif required and not verified:
        problems.append("attestation: none verifies (required)")


def _check_miner_claim(
    doc: Mapping, claim_doc: object, claim_keys: Mapping[str, bytes] | None
) -> list[str]:
    claim = claim_doc.get("claim") if isinstance(claim_doc, Mapping) else None
    sig_doc = claim_doc.get("signature") if isinstance(claim_doc, Mapping) else None
    if not isinstance(claim, Mapping) or not isinstance(sig_doc, Mapping):
        return ["miner_claim: must be {'claim': ..., 'signature': ...}"]
    problems = []
    miner_id = claim.get("miner_id")
    if claim_keys is not None:
        public = claim_keys.get(miner_id) if isinstance(miner_id, str) else None
        if public is None:
            return [f"miner_claim: unknown miner {miner_id!r}"]
    else:
        try:
            public = b64url_decode(sig_doc.get("key_id"), name="key_id")
        except ValueError:
            public = b""
        if len(public) != 32:
            return ["miner_claim: signature key_id is not an Ed25519 public key"]
    problems.extend(f"miner_claim: {p}" for p in verify_claim(claim_doc, public))
    for name, receipt_field in (
        ("job_id", "job_id"),
        ("artifact_hash", "artifact_hash"),
        ("miner_id", "provider"),
    ):
        if claim.get(name) != doc.get(receipt_field):
            problems.append(
                f"miner_claim: claim.{name} does not match the receipt's {receipt_field}"
            )
    return problems
