"""City codes (城市码): one identifier for every pole and terminal in Suihua.

Layout, 15 characters from ``0-9A-Z``::

    231202 21 000017 K
    │      │  │      └ check character, ISO 7064 MOD 37,36 over the first 14
    │      │  └ serial, 6 characters (issued as digits, in order, per division and class)
    │      └ class code, 2 digits: 10 smart pole, 21 water-quality station, ... (devices.catalogue)
    └ GB/T 2260 code of the county-level division where it was registered

Codes are accepted with spaces or hyphens and in lower case, and always stored and
shown in the canonical 15-character form. A code never changes when a device moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices import KINDS
from registry.errors import InvalidCode

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
POLE_CLASS = "10"
_VALUE = {char: value for value, char in enumerate(ALPHABET)}
CLASS_CODES: dict[str, str] = {POLE_CLASS: "smart_pole", **{k.class_code: k.key for k in KINDS}}
LENGTH = 15
MAX_SERIAL = 999_999


def mod37_36_check(body: str) -> str:
    """The ISO 7064 MOD 37,36 check character for ``body`` (characters of ``ALPHABET``)."""
    p = 36
    for char in body:
        p = (p + _VALUE[char]) % 36
        if p == 0:
            p = 36
        p = (2 * p) % 37
    return ALPHABET[(37 - p) % 36]


@dataclass(frozen=True)
class CityCode:
    division: str
    class_code: str
    serial: str
    check: str

    @property
    def value(self) -> str:
        return f"{self.division}{self.class_code}{self.serial}{self.check}"

    @property
    def display(self) -> str:
        """Grouped for labels: ``231202-21-000017-K``."""
        return f"{self.division}-{self.class_code}-{self.serial}-{self.check}"

    @property
    def kind(self) -> str:
        """``smart_pole`` or the terminal kind key this class code stands for."""
        return CLASS_CODES[self.class_code]

    def __str__(self) -> str:
        return self.value


def normalise(raw: str) -> str:
    """Upper case, without spaces and hyphens."""
    return "".join(raw.split()).replace("-", "").upper()


def parse(raw: str, known_divisions: frozenset[str] | None = None) -> CityCode:
    """Validate a city code and split it into its parts; raises ``InvalidCode`` saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidCode(str(raw), "city code is empty")
    code = normalise(raw)
    if len(code) != LENGTH:
        raise InvalidCode(
            raw, f"city code must have {LENGTH} characters (6 division + 2 class + 6 serial + 1 check), got {len(code)}"
        )
    bad = sorted({c for c in code if c not in ALPHABET})
    if bad:
        raise InvalidCode(raw, f"city code may use only 0-9 and A-Z, found {''.join(bad)!r}")
    division, class_code, serial, check = code[:6], code[6:8], code[8:14], code[14]
    if not division.isdigit():
        raise InvalidCode(raw, f"the first 6 characters must be a GB/T 2260 division code, got {division!r}")
    if known_divisions is not None and division not in known_divisions:
        raise InvalidCode(raw, f"division {division} is not a county-level division of Suihua")
    if class_code not in CLASS_CODES:
        raise InvalidCode(raw, f"class code {class_code!r} is unknown; known: {', '.join(sorted(CLASS_CODES))}")
    expected = mod37_36_check(code[:14])
    if check != expected:
        raise InvalidCode(raw, f"check character is {check!r} but should be {expected!r}: the code is mistyped")
    return CityCode(division, class_code, serial, check)


def make(division: str, class_code: str, serial: int) -> CityCode:
    """The code for ``serial`` in a division and class."""
    if not 0 < serial <= MAX_SERIAL:
        raise InvalidCode(str(serial), f"serial must be between 1 and {MAX_SERIAL}")
    body = f"{division}{class_code}{serial:06d}"
    return CityCode(division, class_code, f"{serial:06d}", mod37_36_check(body))
