"""Receipt cryptography: canonical JSON, Ed25519 signatures, attestations, miner claims."""

from core.receipts.canonical import (
    b64url_decode,
    b64url_encode,
    canonical_bytes,
    canonical_json,
    content_hash,
    money,
)
from core.receipts.claims import CLAIM_FIELDS, sign_claim, verify_claim
from core.receipts.errors import ReceiptError
from core.receipts.fields import check_fields
from core.receipts.keyring import KeyRing, PublicKeyInfo
from core.receipts.keys import (
    APPROVED_ALGS,
    Signer,
    load_or_create_signing_key,
    parse_public_key,
    parse_seed_hex,
)
from core.receipts.receipt import build_receipt, issue_receipt, sign_receipt
from core.receipts.verify import VerificationResult, verify_receipt

__all__ = [
    "APPROVED_ALGS",
    "CLAIM_FIELDS",
    "KeyRing",
    "PublicKeyInfo",
    "ReceiptError",
    "Signer",
    "VerificationResult",
    "b64url_decode",
    "b64url_encode",
    "build_receipt",
    "canonical_bytes",
    "canonical_json",
    "check_fields",
    "content_hash",
    "issue_receipt",
    "load_or_create_signing_key",
    "money",
    "parse_public_key",
    "parse_seed_hex",
    "sign_claim",
    "sign_receipt",
    "verify_claim",
    "verify_receipt",
]
