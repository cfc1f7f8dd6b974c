"""City codes: layout, ISO 7064 MOD 37,36 check character, clear errors."""

from __future__ import annotations

import pytest

from registry import codes
from registry.errors import InvalidCode


def test_check_character_matches_the_published_vector():
    # standards.md §8: the stdnum doctest vector of ISO 7064 MOD 37,36.
    assert codes.mod37_36_check("A12425GABC1234002") == "M"


def test_make_and_parse_round_trip():
    made = codes.make("231202", "21", 17)
    assert made.value == "23120221000017B"
    assert made.display == "231202-21-000017-B"
    parsed = codes.parse("231202-21-000017-b")
    assert parsed == made
    assert parsed.kind == "water_quality_station"
    assert codes.parse(" 2312 0221 0000 17B ").value == made.value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("23120221000017", "must have 15 characters"),
        ("23120221000017BX", "must have 15 characters"),
        ("2312022100001_B", "may use only 0-9 and A-Z"),
        ("23120299000017B", "class code '99' is unknown"),
        ("23120221000017C", "check character is 'C' but should be 'B'"),
    ],
)
def test_invalid_codes_say_what_is_wrong(raw, message):
    with pytest.raises(InvalidCode, match=message):
        codes.parse(raw)


def test_division_must_be_a_suihua_county_when_known():
    other = codes.make("230102", "21", 1).value  # Harbin 道里区
    with pytest.raises(InvalidCode, match="not a county-level division of Suihua"):
        codes.parse(other, frozenset({"231202"}))


def test_every_single_character_substitution_is_detected():
    code = codes.make("231282", "31", 4711).value
    for position in range(len(code)):
        for char in codes.ALPHABET:
            if char == code[position]:
                continue
            mistyped = code[:position] + char + code[position + 1:]
            with pytest.raises(InvalidCode):
                codes.parse(mistyped)


def test_serial_range():
    with pytest.raises(InvalidCode, match="serial must be between"):
        codes.make("231202", "21", 1_000_000)
