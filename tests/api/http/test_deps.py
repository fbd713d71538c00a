"""The request dependencies' token cache: answers as a fresh check would, until expiry."""

from __future__ import annotations

import pytest

from api.accounts import AuthError, Principal, decode_token, make_access_token, make_refresh_token
from api.http.deps import TokenCache

SECRET = "s" * 32


class CountingAccounts:
    """Stands in for :class:`api.accounts.Accounts`: the same token check, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def authenticate(self, token: str, now_s: float) -> Principal:
        self.calls += 1
        claims = decode_token(SECRET, token, "access", now_s)
        return Principal(name=claims["sub"], role=claims["role"])


def test_a_valid_token_is_checked_once_until_it_expires():
    accounts, cache = CountingAccounts(), TokenCache()
    token = make_access_token(SECRET, "olga", "operator", 1000.0, 60.0)
    for now in (1000.0, 1010.0, 1059.0):
        user = cache.authenticate(accounts, token, now)
        assert (user.name, user.role) == ("olga", "operator")
    assert accounts.calls == 1
    with pytest.raises(AuthError, match="token expired"):
        cache.authenticate(accounts, token, 1060.0)
    with pytest.raises(AuthError, match="token expired"):
        cache.authenticate(accounts, token, 1000.0 + 3600)


def test_bad_tokens_are_refused_every_time_and_not_kept():
    accounts, cache = CountingAccounts(), TokenCache()
    good = make_access_token(SECRET, "olga", "operator", 1000.0, 60.0)
    tampered = good[:-3] + ("xyz" if good[-3:] != "xyz" else "abc")
    refresh, _ = make_refresh_token(SECRET, "olga", 1000.0, 600.0)
    for token, msg in ((tampered, "invalid token"), ("not-a-jwt", "invalid token"),
                       (refresh, "expected a access token")):
        for _ in range(2):
            with pytest.raises(AuthError, match=msg):
                cache.authenticate(accounts, token, 1001.0)
    assert accounts.calls == 6 and len(cache._items) == 0


def test_the_cache_keeps_the_most_recently_used_tokens():
    accounts, cache = CountingAccounts(), TokenCache(max_size=2)
    tokens = [make_access_token(SECRET, f"u{i}", "viewer", 1000.0, 60.0) for i in range(3)]
    cache.authenticate(accounts, tokens[0], 1000.0)
    cache.authenticate(accounts, tokens[1], 1000.0)
    cache.authenticate(accounts, tokens[0], 1000.0)  # most recent now
    cache.authenticate(accounts, tokens[2], 1000.0)  # evicts tokens[1]
    assert accounts.calls == 3
    cache.authenticate(accounts, tokens[0], 1000.0)
    assert accounts.calls == 3
    cache.authenticate(accounts, tokens[1], 1000.0)
    assert accounts.calls == 4 and len(cache._items) == 2
