"""The Identifier and Password formats, and the Argon2id hash of the Password.

Both tokens look like GitHub's: a recognisable prefix, base62 random characters from
`secrets`, and a 6-character base62 CRC32 of everything before it. Secret scanners can find a
leaked token by its shape, and `is_*` rejects a mistyped one without touching the database
or Argon2.

    Identifier  ckid_ + 20 random + checksum                          (31 characters)
    Password    ckpw_ + the Identifier's 20 random + 40 random + checksum  (71 characters)

A Password names its key: only its Argon2 hash is stored, so a password found alone (a leak
report) leads to its key through that public part, never by trying every hash. Its secret is
the 40 random characters (~238 bits). Passwords made before this layout (ckpw_ + 40 random +
checksum, 51 characters) still authenticate, but a leaked one cannot be traced to its key.
"""

import binascii
import re
import secrets
import string

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

BASE62 = string.digits + string.ascii_letters
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so every CRC32 fits

IDENTIFIER_PREFIX = "ckid_"
IDENTIFIER_RANDOM_LENGTH = 20  # ~119 bits: unguessable, though the Identifier is not secret
PASSWORD_PREFIX = "ckpw_"  # noqa: S105 (a public prefix, not a secret)
PASSWORD_RANDOM_LENGTH = 40  # 40 * log2(62) ~ 238 bits: the secret part

IDENTIFIER_LENGTH = len(IDENTIFIER_PREFIX) + IDENTIFIER_RANDOM_LENGTH + CHECKSUM_LENGTH
PASSWORD_LENGTH = (
    len(PASSWORD_PREFIX) + IDENTIFIER_RANDOM_LENGTH + PASSWORD_RANDOM_LENGTH + CHECKSUM_LENGTH
)
LEGACY_PASSWORD_LENGTH = len(PASSWORD_PREFIX) + PASSWORD_RANDOM_LENGTH + CHECKSUM_LENGTH

_IDENTIFIER_RE = re.compile(
    rf"{IDENTIFIER_PREFIX}[0-9A-Za-z]{{{IDENTIFIER_RANDOM_LENGTH + CHECKSUM_LENGTH}}}"
)
_PASSWORD_RE = re.compile(
    rf"{PASSWORD_PREFIX}(?:[0-9A-Za-z]{{{IDENTIFIER_RANDOM_LENGTH}}})?"
    rf"[0-9A-Za-z]{{{PASSWORD_RANDOM_LENGTH + CHECKSUM_LENGTH}}}"
)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(binascii.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def _random(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _with_checksum(body: str) -> str:
    return body + _checksum(body)


def _well_formed(token: str, pattern: re.Pattern) -> bool:
    if not isinstance(token, str) or not pattern.fullmatch(token):
        return False
    body, checksum = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def generate_identifier() -> str:
    return _with_checksum(IDENTIFIER_PREFIX + _random(IDENTIFIER_RANDOM_LENGTH))


def generate_password(identifier: str) -> str:
    """A new password for the key `identifier`, naming it by the identifier's random part."""
    if not is_identifier(identifier):
        raise ValueError("Not a well-formed identifier.")
    key_part = identifier[len(IDENTIFIER_PREFIX) : -CHECKSUM_LENGTH]
    return _with_checksum(PASSWORD_PREFIX + key_part + _random(PASSWORD_RANDOM_LENGTH))


def is_identifier(token: str) -> bool:
    """True if token has the Identifier's shape and a correct checksum."""
    return _well_formed(token, _IDENTIFIER_RE)


def is_password(token: str) -> bool:
    """True if token has a Password's shape (either layout) and a correct checksum."""
    return _well_formed(token, _PASSWORD_RE)


def identifier_of(password: str) -> str | None:
    """The identifier of the key a well-formed password names; None for the old layout.

    Cheap and public: it tells which key to check, never whether the password is right.
    """
    if not is_password(password) or len(password) != PASSWORD_LENGTH:
        return None
    key_part = password[len(PASSWORD_PREFIX) :][:IDENTIFIER_RANDOM_LENGTH]
    return _with_checksum(IDENTIFIER_PREFIX + key_part)


def may_belong_to(password: str, identifier: str) -> bool:
    """False if password names another key than `identifier` (an old-layout one names none).

    Both must be well-formed (is_password, is_identifier): then comparing the random part
    they share says what identifier_of() would."""
    if len(password) != PASSWORD_LENGTH:
        return True
    start = len(PASSWORD_PREFIX)
    key_part = password[start : start + IDENTIFIER_RANDOM_LENGTH]
    return key_part == identifier[len(IDENTIFIER_PREFIX) :][:IDENTIFIER_RANDOM_LENGTH]


# Argon2id parameters for a 238-bit random secret. Memory- and time-hardness exist to slow an
# offline guesser of a *human* password; no guesser can enumerate 2**238 candidates however
# cheap each guess is, so the hash only has to be one-way and not be a shortcut. We keep
# Argon2id (docs/design.md §3 asks for it) with small parameters, so that a cold verification is
# cheap for the server and a flood of them cannot exhaust memory:
#   t=1 pass, m=8 MiB, p=1  ->  3.3 ms per verification on this 2-core machine, against
#   19.8 ms for OWASP's t=2/19 MiB and 93 ms for argon2-cffi's default t=3/64 MiB/p=4
#   (`.venv/bin/python bench/argon2_params.py` prints the figures).
# Raising them later is safe: needs_rehash() upgrades a stored hash on its next verification.
ARGON2_TIME_COST = 1
ARGON2_MEMORY_COST_KIB = 8 * 1024
ARGON2_PARALLELISM = 1

hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_password(password: str) -> str:
    return hasher.hash(password)


class StoredHashUnusable(Exception):
    """The stored hash cannot be parsed: the database's fault, never the caller's."""


def verify_password(stored_hash: str, password: str) -> bool:
    """Verify in constant time; False for a wrong password. A stored hash that cannot be
    parsed raises StoredHashUnusable (fails closed, and is not the caller's failure)."""
    try:
        return hasher.verify(stored_hash, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError) as error:
        raise StoredHashUnusable(str(error)) from None


def needs_rehash(stored_hash: str) -> bool:
    try:
        return hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
