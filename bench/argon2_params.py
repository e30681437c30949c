"""Measure Argon2id hash/verify time for the key password parameters and some alternatives.

    .venv/bin/python bench/argon2_params.py

Prints median milliseconds per verification; keys/tokens.py quotes the result.
"""

import statistics
import time

from argon2 import PasswordHasher, Type

from keys import tokens

CANDIDATES = [
    ("chosen: t=1 m=8 MiB p=1", tokens.hasher),
    ("t=2 m=19 MiB p=1 (OWASP minimum)", PasswordHasher(2, 19 * 1024, 1, type=Type.ID)),
    ("argon2-cffi default t=3 m=64 MiB p=4", PasswordHasher(type=Type.ID)),
]


def median_ms(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    password = tokens.generate_password(tokens.generate_identifier())
    print(f"{'parameters':40} {'hash ms':>8} {'verify ms':>10}")
    for label, hasher in CANDIDATES:
        stored = hasher.hash(password)
        hash_ms = median_ms(lambda h=hasher: h.hash(password), 30)
        verify_ms = median_ms(lambda h=hasher, s=stored: h.verify(s, password), 30)
        print(f"{label:40} {hash_ms:8.1f} {verify_ms:10.1f}")


if __name__ == "__main__":
    main()
