"""One-time approval codes: make them, normalise what people type, hash and verify them.

A code is 10 characters of Crockford base32 (50 random bits), shown as ``ABCDE-FGHJK``. Only
:func:`hash_code`'s output is ever stored; :func:`verify_code` checks a typed code against it.
Pure functions, no I/O.

The hash is scrypt (salted, deliberately slow): a stolen database must not let anyone recover
a still-open code by trying all 2**50 of them quickly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32: digits and letters without I, L, O and U."""
CODE_LENGTH = 10
GROUP = 5

SCHEME = "scrypt"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32

# Bounds for parameters read back from a stored hash: anything outside is malformed, and a
# corrupted row must not make verification allocate gigabytes or spin for minutes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAXMEM = 256 * 1024 * 1024

_ALPHABET_SET = frozenset(ALPHABET)
# Crockford decoding: letters people confuse with digits read as those digits.
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Separators people (or their mail client's autocorrect) put into a code: hyphen, en and em
# dash, minus sign and the other Unicode dashes.
_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212")


def new_code() -> str:
    """A fresh random code from :mod:`secrets`, formatted ``ABCDE-FGHJK``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return format_code(raw)


def format_code(code: str) -> str:
    """``code`` normalised and split into groups of five with a dash, for display."""
    plain = normalise_code(code)
    return "-".join(plain[i : i + GROUP] for i in range(0, len(plain), GROUP))


def normalise_code(text: str) -> str:
    """What the approver typed, in the canonical form codes are hashed in.

    Upper case; spaces, tabs and dashes removed; ``O`` read as ``0`` and ``I``/``L`` as ``1``.
    The result is not checked: see :func:`looks_like_code`.
    """
    kept = (ch for ch in text.upper() if not ch.isspace() and ch not in _SEPARATORS)
    return "".join(kept).translate(_CONFUSABLE)


def looks_like_code(text: str) -> bool:
    """True if ``text``, normalised, is exactly 10 Crockford base32 characters."""
    if not isinstance(text, str):
        return False
    plain = normalise_code(text)
    return len(plain) == CODE_LENGTH and all(ch in _ALPHABET_SET for ch in plain)


def hash_code(code: str) -> str:
    """A salted scrypt hash of the normalised ``code``, as one string to store.

    Format ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; a new salt each call, so two hashes of
    the same code differ. Raises :class:`ValueError` if ``code`` is not a code at all.
    """
    if not looks_like_code(code):
        raise ValueError("not a one-time code (10 Crockford base32 characters)")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(normalise_code(code), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return "$".join([SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_code(text: str, stored: str) -> bool:
    """True only if ``text`` (typed any way :func:`normalise_code` accepts) matches ``stored``.

    Never raises: a malformed stored hash, a wrong type or input that is not a code at all is
    simply False. The comparison is constant-time.
    """
    try:
        if not isinstance(stored, str) or not looks_like_code(text):
            return False
        parsed = _parse(stored)
        if parsed is None:
            return False
        n, r, p, salt, expected = parsed
        actual = _scrypt(normalise_code(text), salt, n, r, p, len(expected))
        return hmac.compare_digest(actual, expected)
    except (ValueError, TypeError, MemoryError, OverflowError):
        return False


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    _, n_text, r_text, p_text, salt_text, hash_text = parts
    if not all(t.isascii() and t.isdigit() for t in (n_text, r_text, p_text)):
        return None
    n, r, p = int(n_text), int(r_text), int(p_text)
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    try:
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(hash_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(salt) < 8 or not 16 <= len(expected) <= 64:
        return None
    return n, r, p, salt, expected


def _scrypt(plain: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        plain.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
