"""The rate limit hands over what it still holds at the end (review finding: the last
held-back health events of a session were never published, so a recording said
"stale 11" where the session counted 12)."""

from __future__ import annotations

from stimloop.stream.ratelimit import RateLimiter


def test_flush_returns_every_held_report_once():
    now = [0.0]
    limit = RateLimiter(1.0, clock=lambda: now[0])
    assert limit.allow("stale") == 0  # the first goes out
    assert limit.allow("stale") is None and limit.allow("stale") is None  # two held
    assert limit.allow("gap") == 0
    now[0] = 1.5
    assert limit.allow("stale") == 2  # the next report carries them
    assert limit.allow("stale") is None  # one more held, with nothing after it
    assert limit.flush() == {"stale": 1}
    assert limit.flush() == {}
