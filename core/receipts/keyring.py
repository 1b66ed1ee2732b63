"""KeyRing: the current and retired public keys with validity windows, as published JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from core.receipts.canonical import b64url_decode, b64url_encode
from core.receipts.errors import ReceiptError
from core.receipts.keys import ALG, APPROVED_ALGS, Signer


def _opt_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReceiptError(f"{name}: must be null or a non-negative integer (unix seconds)")
    return value


@dataclass(frozen=True, slots=True)
class PublicKeyInfo:
    """One public key. `valid_from`/`valid_until` bound (inclusive, unix seconds) the
    `completed_at` of receipts it may sign; None leaves that side open."""

    public_key: bytes
    valid_from: int | None = None
    valid_until: int | None = None
    alg: str = ALG
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ReceiptError("public_key: an Ed25519 public key is 32 bytes")
        if self.alg not in APPROVED_ALGS:
            raise ReceiptError(f"alg: {self.alg!r} not approved")
        _opt_int(self.valid_from, "valid_from")
        _opt_int(self.valid_until, "valid_until")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until < self.valid_from
        ):
            raise ReceiptError("valid_until: earlier than valid_from")
        object.__setattr__(self, "key_id", b64url_encode(self.public_key))

    def valid_at(self, when: int) -> bool:
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_until is None or when <= self.valid_until


class KeyRing:
    """The current key plus retired ones.

    A receipt verifies against a key only when its `completed_at` lies in that key's window.
    This relies on receipts being signed when the coordinator measures `completed_at` (so a
    receipt is always signed by the key current at that second): `rotate(at=now)` ends the old
    key's window at `at` and starts the new one there.
    """

    def __init__(self, current: PublicKeyInfo, retired: Iterable[PublicKeyInfo] = ()):
        self.current = current
        self.retired: tuple[PublicKeyInfo, ...] = tuple(retired)
        self._by_id: dict[str, PublicKeyInfo] = {}
        for info in (current, *self.retired):
            if info.key_id in self._by_id:
                raise ReceiptError(f"keys: key_id {info.key_id} listed twice")
            self._by_id[info.key_id] = info

    @classmethod
    def single(cls, key: Signer | bytes, *, valid_from: int | None = None) -> KeyRing:
        public = key.public_key if isinstance(key, Signer) else key
        return cls(PublicKeyInfo(public, valid_from=valid_from))

    def rotate(self, new_key: Signer | bytes, *, at: int) -> KeyRing:
        """A new ring whose current key is `new_key` from `at`; the old one retires at `at`."""
        public = new_key.public_key if isinstance(new_key, Signer) else new_key
        old = replace(self.current, valid_until=at)
        return KeyRing(PublicKeyInfo(public, valid_from=at), (old, *self.retired))

    def __iter__(self) -> Iterator[PublicKeyInfo]:
        return iter((self.current, *self.retired))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def get(self, key_id: str) -> PublicKeyInfo | None:
        return self._by_id.get(key_id)

    def resolve(self, key_id: str, completed_at: int | None) -> tuple[bytes | None, str | None]:
        """(public key, None) when `key_id` may sign a receipt completed then, else (None, why).

        With `completed_at` None (it is missing or invalid, reported elsewhere) only the key's
        existence is checked.
        """
        info = self._by_id.get(key_id)
        if info is None:
            return None, f"unknown key_id {key_id!r}"
        if completed_at is not None and not info.valid_at(completed_at):
            return None, (
                f"key_id {key_id!r} is not valid at completed_at {completed_at} "
                f"(valid {info.valid_from}..{info.valid_until})"
            )
        return info.public_key, None

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "keys": [
                {
                    "alg": info.alg,
                    "key_id": info.key_id,
                    "status": "current" if info is self.current else "retired",
                    "valid_from": info.valid_from,
                    "valid_until": info.valid_until,
                }
                for info in self
            ]
        }

    def to_json(self) -> str:
        """The published form (`GET /v1/keys`): {"keys": [{alg, key_id, status, ...}]}."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, doc: str | bytes | Mapping) -> KeyRing:
        """Parse and validate the published form; errors name the offending field."""
        if isinstance(doc, str | bytes | bytearray):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                raise ReceiptError(f"keys: not valid JSON ({exc})") from exc
        if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
            raise ReceiptError("keys: expected an object with a 'keys' list")
        current: list[PublicKeyInfo] = []
        retired: list[PublicKeyInfo] = []
        for i, entry in enumerate(doc["keys"]):
            where = f"keys[{i}]"
            if not isinstance(entry, Mapping):
                raise ReceiptError(f"{where}: must be an object")
            if entry.get("alg") not in APPROVED_ALGS:
                raise ReceiptError(f"{where}.alg: {entry.get('alg')!r} not approved")
            try:
                public = b64url_decode(entry.get("key_id"), name=f"{where}.key_id")
            except ValueError as exc:
                raise ReceiptError(str(exc)) from exc
            if len(public) != 32:
                raise ReceiptError(f"{where}.key_id: not a 32-byte Ed25519 public key")
            valid_from = _opt_int(entry.get("valid_from"), f"{where}.valid_from")
            valid_until = _opt_int(entry.get("valid_until"), f"{where}.valid_until")
            try:
                info = PublicKeyInfo(public, valid_from=valid_from, valid_until=valid_until)
            except ReceiptError as exc:
                raise ReceiptError(f"{where}.{exc.message}") from exc
            status = entry.get("status")
            if status not in ("current", "retired"):
                raise ReceiptError(f"{where}.status: must be 'current' or 'retired'")
            (current if status == "current" else retired).append(info)
        if len(current) != 1:
            raise ReceiptError(f"keys: exactly one current key required, found {len(current)}")
        return cls(current[0], retired)
