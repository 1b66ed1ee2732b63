"""Row codec and page cursors, without a database."""

from __future__ import annotations

import pytest

from coordinator.store import codec
from core.errors import InvalidArgument


@pytest.mark.parametrize("created_at", [0.0, 1_700_000_000.123456789, 1 / 3, 5e-324, 1e300])
def test_cursor_round_trip_is_exact(created_at):
    token = codec.encode_cursor(created_at, "job-ü/=+")
    assert "=" not in token and "+" not in token and "/" not in token  # URL-safe, unpadded
    assert codec.decode_cursor(token) == (created_at, "job-ü/=+")


def test_every_malformed_cursor_is_invalid_argument():
    for token in ("%%%", "WzFd", "W251bGwsIngiXQ", "WyJOYU4iLCJ4Il0", "WzEsIngiLDNd"):
        with pytest.raises(InvalidArgument) as info:
            codec.decode_cursor(token)
        assert info.value.violations == [("page_token", "malformed page token")]


def test_json_is_compact_and_rejects_what_it_cannot_store():
    assert codec.dumps({"a": [1, 2]}, "parameters") == '{"a":[1,2]}'
    for bad in ({"x": float("inf")}, {"x": object()}):
        with pytest.raises(InvalidArgument) as info:
            codec.dumps(bad, "parameters")
        assert info.value.violations[0][0] == "parameters"
