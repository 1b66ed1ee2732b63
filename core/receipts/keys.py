"""Ed25519 signing keys: Signer, seed parsing, the key file, and signature checks."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

import nacl.bindings
import nacl.exceptions
from nacl.signing import SigningKey

from core.receipts.canonical import b64url_decode, b64url_encode
from core.receipts.errors import ReceiptError

ALG = "Ed25519"
APPROVED_ALGS = frozenset({ALG})
_HEX = frozenset("0123456789abcdefABCDEF")


class Signer:
    """An Ed25519 private key; `key_id` is its unpadded base64url public key."""

    __slots__ = ("_secret", "_sk", "key_id", "public_key")

    def __init__(self, signing_key: SigningKey):
        self._sk = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        self.key_id: str = b64url_encode(self.public_key)
        # libsodium's 64-byte secret key (seed + public key), for signing without
        # SigningKey.sign's SignedMessage wrapping (about 6 us of a receipt's 40 us signature).
        _, self._secret = nacl.bindings.crypto_sign_seed_keypair(bytes(signing_key))

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise ReceiptError("seed: an Ed25519 seed is exactly 32 bytes")
        return cls(SigningKey(bytes(seed)))

    @classmethod
    def generate(cls) -> Signer:
        return cls(SigningKey.generate())

    def sign(self, data: bytes) -> dict[str, str]:
        """A detached signature over `data`: {"alg", "key_id", "sig"}."""
        return {"alg": ALG, "key_id": self.key_id, "sig": b64url_encode(self.signature(data))}

    def signature(self, data: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of `data` (crypto_sign puts it before `data`)."""
        return nacl.bindings.crypto_sign(data, self._secret)[: nacl.bindings.crypto_sign_BYTES]

    def seed_hex(self) -> str:
        """The 32-byte seed as hex (what the key file and AITBC_*_KEY settings hold)."""
        return bytes(self._sk).hex()

    def __repr__(self) -> str:  # never print the secret
        return f"Signer(key_id={self.key_id!r})"


def parse_seed_hex(value: str, *, name: str) -> bytes:
    """A 32-byte seed from 64 hex characters; the error names `name` (e.g. the env key)."""
    if not isinstance(value, str):
        raise ReceiptError(f"{name}: must be 64 hex characters (a 32-byte Ed25519 seed)")
    text = value.strip()
    if len(text) != 64 or not _HEX.issuperset(text):
        # The value is a secret: describe it, never echo it.
        raise ReceiptError(
            f"{name}: must be 64 hex characters (a 32-byte Ed25519 seed), "
            f"got {len(text)} characters"
            + ("" if _HEX.issuperset(text) else " including non-hex ones")
        )
    return bytes.fromhex(text)


def parse_public_key(value: str | bytes, *, name: str) -> bytes:
    """A 32-byte Ed25519 public key from raw bytes, a base64url key_id, or 64 hex chars."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value):
        raw = bytes.fromhex(value)
    elif isinstance(value, str):
        try:
            raw = b64url_decode(value, name=name)
        except ValueError as exc:
            raise ReceiptError(str(exc)) from exc
    else:
        raise ReceiptError(f"{name}: expected bytes or a string, got {type(value).__name__}")
    if len(raw) != 32:
        raise ReceiptError(f"{name}: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


def check_signature(sig_doc: object, data: bytes, public_key: bytes) -> str | None:
    """None when `sig_doc` is a valid approved signature over `data`, else the problem."""
    problem = signature_shape(sig_doc)
    if problem:
        return problem
    assert isinstance(sig_doc, Mapping)
    try:
        sig = b64url_decode(sig_doc["sig"], name="sig")
    except ValueError:
        return "malformed sig (not unpadded base64url)"
    if len(sig) != 64:
        return f"malformed sig ({len(sig)} bytes, expected 64)"
    try:
        # crypto_sign_open on sig+msg is libsodium's verify; VerifyKey.verify does the same.
        nacl.bindings.crypto_sign_open(sig + data, public_key)
    except nacl.exceptions.BadSignatureError:
        return "does not verify"
    return None


def signature_shape(sig_doc: object) -> str | None:
    """The structural problem of a {"alg","key_id","sig"} object, if any."""
    if not isinstance(sig_doc, Mapping):
        return "missing or not an object"
    alg = sig_doc.get("alg")
    if alg not in APPROVED_ALGS:
        return f"alg {alg!r} not approved"
    for key in ("key_id", "sig"):
        if not isinstance(sig_doc.get(key), str) or not sig_doc[key]:
            return f"{key} missing"
    return None


def load_or_create_signing_key(path: Path) -> tuple[Signer, bool]:
    """The signer stored at `path` (hex seed), creating it on first use.

    Returns (signer, created). A new file is written 0600 (its new parent dirs 0700) and
    published with a hard link, so two processes starting together end up with one key. An
    existing file readable or writable by group/others, or not holding a 64-hex seed, is
    refused with an error naming the path: silently using or replacing it would be worse.
    """
    path = Path(path)
    try:
        return _load_key_file(path), False
    except FileNotFoundError:
        pass
    _make_private_dirs(path.parent)
    signer = Signer.generate()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(signer.seed_hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: use its key
            return _load_key_file(path), False
    finally:
        tmp.unlink(missing_ok=True)
    return signer, True


def _make_private_dirs(directory: Path) -> None:
    """Create missing parents with 0700; existing directories are left as they are."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask


def _load_key_file(path: Path) -> Signer:
    st = os.stat(path)  # FileNotFoundError means "create it"
    if not stat.S_ISREG(st.st_mode):
        raise ReceiptError(f"signing key file {path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ReceiptError(
            f"signing key file {path}: permissions {mode:04o} are too open "
            f"(must be 0600 or stricter; run: chmod 600 {path})"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        raise ReceiptError(f"signing key file {path}: unreadable ({exc})") from exc
    return Signer.from_seed(parse_seed_hex(text, name=f"signing key file {path}"))
