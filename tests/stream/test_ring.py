"""RingBuffer: wrap-around, overflow and absolute indices."""

from __future__ import annotations

import numpy as np
import pytest

from stimloop.stream.ring import RingBuffer


def test_wraps_and_returns_time_ordered_copies():
    ring = RingBuffer(10, 2)
    x = np.arange(30, dtype=np.float32).reshape(15, 2)
    t = np.arange(15, dtype=float)
    assert ring.write(x[:7], t[:7]) == 0
    assert ring.write(x[7:], t[7:]) == 7
    data, stamps, first = ring.latest(10)
    np.testing.assert_array_equal(data, x[5:])
    np.testing.assert_array_equal(stamps, t[5:])
    assert first == 5 == ring.first_index
    data[:] = -1  # a copy: the ring is untouched
    np.testing.assert_array_equal(ring.latest(3)[0], x[12:])


def test_chunk_larger_than_capacity_keeps_newest_and_counts_all():
    ring = RingBuffer(4, 1)
    x = np.arange(9, dtype=np.float32)[:, None]
    ring.write(x, np.arange(9.0))
    assert ring.n_written == 9
    data, _, first = ring.latest(100)
    np.testing.assert_array_equal(data[:, 0], [5, 6, 7, 8])
    assert first == 5


def test_invalid_capacity_is_rejected():
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        RingBuffer(0, 1)
