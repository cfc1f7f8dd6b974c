"""Fire tests: sequences kept for replay (tests/fire/frames.py) live as long as the module that made them."""

from __future__ import annotations

import pytest

from tests.fire import frames


@pytest.fixture(scope="module", autouse=True)
def _forget_kept_sequences():
    yield
    frames.forget()
