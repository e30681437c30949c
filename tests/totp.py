"""RFC 6238 codes for the tests, computed here rather than with the code under test."""

import base64
import hashlib
import hmac
import struct
import time


def totp(secret: str, at: float | None = None) -> str:
    """The code of `secret` (base32) at `at` (now): HMAC-SHA1, 30 s steps, six digits."""
    counter = int(time.time() if at is None else at) // 30
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**6
    return f"{value:06d}"
