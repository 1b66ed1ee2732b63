"""Canonical JSON bytes (the AITBC signing form), base64url, content hashes and money."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from json.encoder import (  # c_make_encoder is None without the C accelerator
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

from core.receipts.errors import ReceiptError

# Top-level keys that carry signatures and are therefore not part of the signed bytes.
UNSIGNED_KEYS: tuple[str, ...] = ("signature", "attestations")


def one_shot_encoder(**options: Any) -> Callable[[Any], str]:
    """JSONEncoder(**options).encode with the same text and errors, about 2.5 us cheaper a call.

    JSONEncoder.encode goes through iterencode, which builds the C encoder again on every call
    behind two Python layers; this builds it directly (with a fresh circular-reference memo,
    as iterencode does). Used on the coordinator's per-job paths. No `indent`: that form is
    not the C encoder's.
    """
    encoder = json.JSONEncoder(**options)
    if c_make_encoder is None or encoder.indent is not None:
        return encoder.encode
    strings = encode_basestring_ascii if encoder.ensure_ascii else encode_basestring
    make, circular = c_make_encoder, encoder.check_circular
    args = (
        encoder.default,
        strings,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: Any) -> str:
        return "".join(make({} if circular else None, *args)(value, 0))

    return encode


# json.dumps defaults (ensure_ascii, float repr) with sorted keys and compact separators, as
# the original AITBC verifier does. allow_nan=False only turns NaN/Infinity (not JSON) into an
# error instead of an unparseable "NaN".
_encode = one_shot_encoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def drop_nulls(value: object) -> object:
    """Drop null-valued keys at every level; lists keep their nulls (they are not keys)."""
    kind = type(value)
    # Exact-type checks first: isinstance against the Mapping ABC is slow on hot paths.
    if kind is dict:
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if kind is list or kind is tuple:
        return [drop_nulls(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [drop_nulls(v) for v in value]
    return value


def canonical_json(doc: Mapping, *, exclude: tuple[str, ...] = UNSIGNED_KEYS) -> str:
    """The canonical JSON text of `doc` without the top-level `exclude` keys (ASCII only)."""
    if type(doc) is not dict or (exclude and not doc.keys().isdisjoint(exclude)):
        if not isinstance(doc, Mapping):
            raise ReceiptError(f"canonical form needs a JSON object, got {type(doc).__name__}")
        doc = {k: v for k, v in doc.items() if k not in exclude}
    try:
        text = _encode(doc)
        # Fast path: every null-valued key serializes as `":null`; when that byte sequence is
        # absent there is nothing to prune. (A false positive only costs the slow path.)
        if '":null' not in text:
            return text
        return _encode(drop_nulls(doc))
    except TypeError:
        try:  # nested non-dict Mappings are not encodable as such; drop_nulls turns them into dicts
            return _encode(drop_nulls(doc))
        except (TypeError, ValueError) as exc:
            raise ReceiptError(f"not canonicalizable as JSON: {exc}") from exc
    except ValueError as exc:
        raise ReceiptError(f"not canonicalizable as JSON: {exc}") from exc


def canonical_bytes(doc: Mapping, *, exclude: tuple[str, ...] = UNSIGNED_KEYS) -> bytes:
    """The bytes that are signed: canonical JSON of `doc` without signature and attestations.

    Pass `exclude=()` to canonicalize documents (such as a job payload) that may themselves
    carry keys named `signature` or `attestations`.
    """
    return canonical_json(doc, exclude=exclude).encode("ascii")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as used for key ids and signatures."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, name: str = "value") -> bytes:
    """Strict unpadded base64url: rejects other alphabets, padding and non-canonical tails."""
    if not isinstance(text, str):
        raise ValueError(f"{name}: must be a base64url string")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name}: not unpadded base64url") from exc
    # Only one text per byte string, so signatures cannot be re-spelled (no malleability).
    if b64url_encode(data) != text:
        raise ValueError(f"{name}: not canonical unpadded base64url")
    return data


def content_hash(data: bytes) -> str:
    """The receipt spelling of a sha256 digest: "sha256:<64 lowercase hex>"."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


_MICRO = Decimal("0.000001")


def money(value: Decimal | int) -> float | int:
    """A Decimal amount as the JSON number a receipt carries (`units`, `price`).

    Rounds half-to-even to 6 decimals (the ledger keeps the exact Decimal). Returns an int
    when the rounded value is whole (so 2 is written `2`, not `2.0`) and otherwise the float
    whose repr is exactly the rounded decimal, which is what the canonical form prints.
    Floats are refused: they are already rounded in binary and would hide errors.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ReceiptError(f"money: expected Decimal or int, got {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ReceiptError(f"money: not a finite amount: {value}")
    try:
        rounded = amount.quantize(_MICRO, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:
        raise ReceiptError(f"money: amount too large: {value}") from exc
    if rounded == rounded.to_integral_value():
        return int(rounded)
    as_float = float(rounded)
    # Beyond ~15 significant digits a double cannot keep all six decimals.
    if Decimal(repr(as_float)) != rounded:
        raise ReceiptError(f"money: {value} cannot be written exactly with 6 decimals")
    return as_float
