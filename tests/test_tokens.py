from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storelink.tokens import (
    app_token,
    candidate_windows,
    token_major_minor,
    token_ref,
    token_window,
)


def test_published_vector() -> None:
    window = token_window(1764000000)
    assert window == 1960000
    token = app_token(bytes(range(32)), window)
    assert token == 0x104DE62A
    assert token_major_minor(token) == (4173, 58922)
    assert token_ref(4173, 58922) == "104de62a"


def test_token_rotates_every_fifteen_minutes() -> None:
    key = b"k" * 32
    assert token_window(900 * 10) == token_window(900 * 10 + 899.9) == 10
    assert token_window(900 * 11) == 11
    assert app_token(key, 10) != app_token(key, 11)
    assert app_token(b"other-key" * 4, 10) != app_token(key, 10)


def test_candidate_windows_tolerate_skew() -> None:
    assert candidate_windows(900 * 5 + 1) == (5, 4, 6)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_major_minor_round_trip(token: int) -> None:
    major, minor = token_major_minor(token)
    assert 0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF
    assert int(token_ref(major, minor), 16) == token
