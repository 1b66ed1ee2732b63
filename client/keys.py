"""Trusted receipt keys: published (KeyService / `/v1/keys`), from a keys file, or pinned."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aitbc.coordinator.v1 import receipt_service_pb2 as receipt_pb
from google.protobuf import json_format

from core.receipts import (
    KeyRing,
    PublicKeyInfo,
    ReceiptError,
    VerificationResult,
    parse_public_key,
    verify_receipt,
)

Keys = KeyRing | Mapping[str, bytes]
PURPOSES = ("signing", "attestation")


@dataclass(frozen=True)
class TrustedKeys:
    """Keys a receipt is checked against; attestations are checked only when `attestation`
    is set, the miner claim against `claim_keys` (miner_id -> key) when given."""

    signing: Keys
    attestation: Keys | None = None
    claim_keys: Mapping[str, bytes] | None = None
    source: str = "pinned"
    coordinator_id: str = ""
    key_ids: tuple[str, ...] = field(default=())

    def verify(self, document: bytes) -> VerificationResult:
        return verify_receipt(
            document,
            keys=self.signing,
            attestation_keys=self.attestation,
            claim_keys=self.claim_keys,
        )


def _ring(infos: list[PublicKeyInfo], where: str) -> KeyRing:
    # "current" is a label; validity windows decide which key may sign which receipt.
    current = [i for i in infos if i.valid_until is None]
    head = current[0] if current else max(infos, key=lambda i: i.valid_from or 0)
    try:
        return KeyRing(head, [i for i in infos if i is not head])
    except ReceiptError as exc:
        raise ReceiptError(f"{where}: {exc.message}") from exc


def from_response(resp: receipt_pb.ListKeysResponse, *, source: str = "published") -> TrustedKeys:
    """Signing and attestation rings from a ListKeys answer (valid_from/until as windows)."""
    by_purpose: dict[str, list[PublicKeyInfo]] = {p: [] for p in PURPOSES}
    for i, key in enumerate(resp.keys):
        where = f"keys[{i}]"
        if key.purpose not in by_purpose:
            raise ReceiptError(f"{where}.purpose: expected one of {', '.join(PURPOSES)}")
        try:
            info = PublicKeyInfo(
                parse_public_key(key.key_id, name=f"{where}.key_id"),
                valid_from=key.valid_from.seconds if key.HasField("valid_from") else None,
                valid_until=key.valid_until.seconds if key.HasField("valid_until") else None,
                alg=key.alg or "Ed25519",
            )
        except ReceiptError as exc:
            raise ReceiptError(f"{where}: {exc.message}") from exc
        by_purpose[key.purpose].append(info)
    if not by_purpose["signing"]:
        raise ReceiptError("keys: no signing key is published")
    attest = by_purpose["attestation"]
    return TrustedKeys(
        signing=_ring(by_purpose["signing"], "keys"),
        attestation=_ring(attest, "keys") if attest else None,
        source=source,
        coordinator_id=resp.coordinator_id,
        key_ids=tuple(k.key_id for k in resp.keys),
    )


def from_file(path: Path) -> TrustedKeys:
    """A keys file: the `/v1/keys` answer (entries with `purpose`, RFC 3339 times, as printed by
    `aitbc receipt keys --json`) or a KeyRing document (entries with `status`, unix seconds)."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ReceiptError(f"keys file: cannot read {path} ({exc.strerror})") from exc
    except ValueError as exc:
        raise ReceiptError(f"keys file: {path} is not valid JSON ({exc})") from exc
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ReceiptError(f"keys file {path}: expected an object with a 'keys' list")
    source = f"keys file {path}"
    if any(isinstance(e, dict) and "purpose" in e for e in entries):
        resp = receipt_pb.ListKeysResponse()
        try:
            json_format.ParseDict(doc, resp, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise ReceiptError(f"keys file {path}: {exc}") from exc
        return from_response(resp, source=source)
    try:
        ring = KeyRing.from_json(doc)
    except ReceiptError as exc:
        raise ReceiptError(f"keys file {path}: {exc.message}") from exc
    return TrustedKeys(signing=ring, source=source, key_ids=tuple(i.key_id for i in ring))


def pinned(
    signing: Iterable[str],
    attestation: Iterable[str] = (),
    *,
    names: tuple[str, str] = ("signing_key", "attestation_key"),
) -> TrustedKeys:
    """Keys given by id (base64url, or 64 hex characters): trusted at any time.

    `names` are how errors refer to the two inputs (the CLI passes its flag names).
    """
    sig = {_key_id(k, names[0]): parse_public_key(k, name=names[0]) for k in signing}
    att = {_key_id(k, names[1]): parse_public_key(k, name=names[1]) for k in attestation}
    if not sig:
        raise ReceiptError(f"{names[0]}: at least one signing key is required")
    return TrustedKeys(
        signing=sig,
        attestation=att or None,
        key_ids=(*sig, *att),
    )


def _key_id(value: str, name: str) -> str:
    # Receipts name keys by base64url id; a hex form is accepted and normalised.
    return KeyRing.single(parse_public_key(value, name=name)).current.key_id


def parse_miner_keys(values: Iterable[str], *, name: str = "miner_key") -> dict[str, bytes] | None:
    """`MINER_ID=KEY` pairs for checking miner claims against registered keys."""
    out: dict[str, bytes] = {}
    for value in values:
        miner, sep, key = value.partition("=")
        if not sep or not miner or not key:
            raise ReceiptError(f"{name}: expected MINER_ID=KEY, got {value!r}")
        out[miner] = parse_public_key(key, name=f"{name} {miner}")
    return out or None
