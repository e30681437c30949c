"""A secret scanner for tests: its own ECDSA P-256 key pair, signing reports as GitHub does."""

import base64
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

LEAKS = "/api/v1/leaks"


@dataclass
class Scanner:
    key_identifier: str = "test-scanner-key-1"
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def public_keys_document(self) -> dict:
        """What https://api.github.com/meta/public_keys/secret_scanning answers, for this key."""
        pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "public_keys": [
                {"key_identifier": self.key_identifier, "key": pem.decode(), "is_current": True}
            ]
        }

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def post(self, client, body: bytes | list, *, signature=None, key_identifier=None, **extra):
        """POST body (a list is sent as JSON) with this scanner's headers, or those given."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return client.generic(
            "POST",
            LEAKS,
            body,
            content_type="application/json",
            HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER=key_identifier or self.key_identifier,
            HTTP_GITHUB_PUBLIC_KEY_SIGNATURE=signature or self.sign(body),
            **extra,
        )


def match(token: str, url: str = "https://github.com/octo/app/blob/abc123/settings.py") -> dict:
    """One reported match, as GitHub sends it."""
    return {"token": token, "type": "key_portal_password", "url": url, "source": "content"}
