"""Ed25519 signatures for the audit history: a proof that needs a secret the database lacks.

The private key comes from settings.AUDIT_SIGNING_KEY (a PEM private key, or the base64 of its
32-byte seed); anyone with the public key (`manage.py audit_public_key`) can check a signature
and nobody without the private key can make one. A signature is written "<key id>:<base64>",
so what was signed before a key rotation still verifies with the old public key.

Each kind of signed message starts with its own context line, so a signature made for one kind
(an event's chain hash, a checkpoint of the head) can never pass as the other.
"""

import base64
import binascii
import functools
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

EVENT = b"key-portal audit event\n"
CHECKPOINT = b"key-portal audit checkpoint\n"
VERIFICATION = b"key-portal chain verification\n"

PublicKeys = dict[str, Ed25519PublicKey]


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw public key: names the key in signatures."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(text: str) -> Ed25519PrivateKey:
    """Parse a PEM Ed25519 private key or the base64 of a 32-byte seed; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except TypeError:  # encrypted: the app has no passphrase to give
            raise ValueError("the PEM key is encrypted; store it without a passphrase") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("neither a PEM key nor base64") from None
    if len(seed) != 32:
        raise ValueError(f"a base64 seed must decode to 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_keys(text: str) -> PublicKeys:
    """Every Ed25519 public key in a PEM text (one or several blocks), by key id."""
    keys: PublicKeys = {}
    marker = "-----END PUBLIC KEY-----"
    for block in text.split(marker):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        key = serialization.load_pem_public_key((block.strip() + "\n" + marker + "\n").encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("a PEM public key is not an Ed25519 key")
        keys[key_id(key)] = key
    if not keys:
        raise ValueError("no PEM public key (-----BEGIN PUBLIC KEY-----) found")
    return keys


class Signer:
    """Signs with one private key; `signature` names the key it was made with."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, context: bytes, message: str) -> str:
        raw = self._private_key.sign(context + message.encode())
        return f"{self.key_id}:{base64.b64encode(raw).decode()}"


def verify(keys: PublicKeys, context: bytes, message: str, signature: str) -> str | None:
    """Why `signature` is not a valid signature of `message` by one of `keys`; None if it is."""
    kid, _, encoded = signature.partition(":")
    key = keys.get(kid)
    if key is None:
        return f"its signature names key {kid or '?'}, which is not among the public keys given"
    try:
        key.verify(base64.b64decode(encoded, validate=True), context + message.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        return f"its signature by key {kid} does not verify"
    return None


@functools.cache
def signer() -> Signer:
    """The installation's signer, from settings.AUDIT_SIGNING_KEY (parsed once per process)."""
    try:
        return Signer(load_private_key(settings.AUDIT_SIGNING_KEY))
    except ValueError as error:
        raise ImproperlyConfigured(
            f"AUDIT_SIGNING_KEY(_FILE) is not a usable Ed25519 private key: {error}. "
            "Create one with `openssl genpkey -algorithm ed25519` (docs/deploy.md)."
        ) from None


@receiver(setting_changed)
def _forget_signer(*, setting: str, **kwargs) -> None:
    if setting == "AUDIT_SIGNING_KEY":
        signer.cache_clear()
