"""The single-process slot claims: one winner per key, old slots forgotten."""

from datetime import datetime, timedelta, timezone

from monitor.coordination import LocalClaims

T = datetime(2026, 12, 1, tzinfo=timezone.utc)


async def test_one_winner_per_slot_and_kind():
    claims = LocalClaims(keep=2)
    assert await claims.claim("m", "p", "a", T)
    assert not await claims.claim("m", "p", "a", T)
    assert await claims.claim("m", "p", "b", T)  # another location
    assert await claims.claim("m", "p", "a", T, kind="confirm")
    assert await claims.claim("m", "p", "a", T + timedelta(minutes=1))
    assert await claims.claim("m", "p", "a", T + timedelta(minutes=2))
    # Only the newest two are remembered per key.
    assert len(claims._won[("m", "p", "a", "scheduled")]) == 2
