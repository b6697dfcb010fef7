"""One-time approval codes: shape, normalisation, hashing and verification."""

from __future__ import annotations

import base64
import re

import pytest

from upkeep.domain.codes import (
    ALPHABET,
    format_code,
    hash_code,
    looks_like_code,
    new_code,
    normalise_code,
    verify_code,
)

CODE = "7K3QZ-M1XW0"


def test_alphabet_is_crockford_base32() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_new_codes_are_two_groups_of_five_crockford_characters() -> None:
    for _ in range(200):
        code = new_code()
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code), code
        assert looks_like_code(code)


def test_new_codes_are_distinct() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000


@pytest.mark.parametrize(
    "typed",
    [
        "7K3QZ-M1XW0",
        "7k3qz-m1xw0",
        "7K3QZM1XW0",
        " 7K3QZ M1XW0 ",
        "7K3-QZM-1XW-0",
        "7k3qz\tm1xwo",  # O for 0
        "7K3QZ-MIXW0",  # I for 1
        "7K3QZ-MLXW0",  # L for 1
        "7k3qz-mlxwO",
        "7K3QZ\u2013M1XW0",  # an en dash from a mail client's autocorrect
    ],
)
def test_normalisation_accepts_sloppy_typing(typed: str) -> None:
    assert normalise_code(typed) == "7K3QZM1XW0"
    assert looks_like_code(typed)


def test_format_code_shows_the_canonical_form() -> None:
    assert format_code("7k3qz m1xwo") == CODE


@pytest.mark.parametrize(
    "text",
    ["", "   ", "-----", "7K3QZ-M1XW", "7K3QZ-M1XW00", "7K3QZ-M1XWU", "7K3QZ-M1XW!", "7K3QZ-M1XWÄ"],
)
def test_not_a_code(text: str) -> None:
    assert not looks_like_code(text)


def test_hash_has_the_documented_format_and_never_contains_the_code() -> None:
    stored = hash_code(CODE)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert salt and digest
    for form in (CODE, normalise_code(CODE), CODE.lower()):
        assert form not in stored


def test_two_hashes_of_the_same_code_differ() -> None:
    first, second = hash_code(CODE), hash_code(CODE)
    assert first != second
    assert verify_code(CODE, first) and verify_code(CODE, second)


def test_hash_refuses_what_is_not_a_code() -> None:
    with pytest.raises(ValueError):
        hash_code("hello")


def test_verify_accepts_the_right_code_typed_sloppily() -> None:
    stored = hash_code(CODE)
    assert verify_code(CODE, stored)
    assert verify_code(" 7k3qz mlxwo ", stored)


def test_verify_refuses_another_code() -> None:
    stored = hash_code(CODE)
    assert not verify_code("7K3QZ-M1XW1", stored)
    assert not verify_code(new_code(), stored)


def test_verify_refuses_empty_and_non_code_input() -> None:
    stored = hash_code(CODE)
    for text in ("", "   ", "7K3QZ", "7K3QZ-M1XW0-7K3QZ"):
        assert not verify_code(text, stored)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "",
        lambda s: "garbage",
        lambda s: s.replace("scrypt", "bcrypt", 1),
        lambda s: s.rsplit("$", 1)[0],
        lambda s: s + "$extra",
        lambda s: s.replace("$16384$", "$16385$", 1),  # n not a power of two
        lambda s: s.replace("$16384$", "$1073741824$", 1),  # absurd cost
        lambda s: s.replace("$8$", "$0$", 1),
        lambda s: s.replace("$8$", "$-8$", 1),
        lambda s: s.replace("$16384$", "$１６３８４$", 1),  # full-width digits
        lambda s: s.rsplit("$", 1)[0] + "$not*base64",
        lambda s: s.rsplit("$", 1)[0] + "$" + "QUJD",  # too short a hash
        lambda s: s.rsplit("$", 2)[0] + "$$" + s.rsplit("$", 1)[1],  # empty salt
        lambda s: s.rsplit("$", 1)[0] + "$" + base64.b64encode(bytes(32)).decode(),  # other hash
    ],
)
def test_verify_is_false_for_a_malformed_or_wrong_stored_hash(mangle) -> None:  # type: ignore[no-untyped-def]
    stored = mangle(hash_code(CODE))
    assert verify_code(CODE, stored) is False


def test_verify_never_raises_on_wrong_types() -> None:
    stored = hash_code(CODE)
    assert verify_code(None, stored) is False  # type: ignore[arg-type]
    assert verify_code(CODE, None) is False  # type: ignore[arg-type]
    assert verify_code(b"7K3QZM1XW0", stored) is False  # type: ignore[arg-type]
