"""The fire tests' frame helpers (tests/fire/frames.py): rendered ahead in a thread, the same items in the same
order; an error where the item would have been; a consumer stopping early stops the producer; a kept sequence
is served as copies, and a shorter one of the same maker from a longer one's start."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.fire import frames
from tests.fire.frames import Prefetch, ahead, parallel, prefix


def test_ahead_yields_every_item_in_order_from_another_thread():
    makers = []

    def make():
        for i in range(20):
            makers.append(threading.current_thread())
            yield i

    assert list(ahead(make())) == list(range(20))
    assert set(makers) == {makers[0]} and makers[0] is not threading.current_thread()


def test_an_error_in_the_producer_is_raised_where_its_item_would_have_come():
    def make():
        yield 1
        raise ValueError("bad frame")

    items = ahead(make())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(items)


def test_parallel_finishes_on_other_threads_and_keeps_the_order():
    finishers = set()

    def finish(i: int, wait: float) -> int:
        finishers.add(threading.current_thread())
        time.sleep(wait)  # (the first items take longest: they finish last)
        return i * i

    assert list(parallel(((i, 0.02 if i < 3 else 0.0) for i in range(10)), finish)) == [i * i for i in range(10)]
    assert threading.current_thread() not in finishers


def test_a_consumer_stopping_early_stops_the_producer():
    made = []

    def make():
        for i in range(1000):
            made.append(i)
            yield i

    items = ahead(make(), depth=2)
    assert next(items) == 0
    items.close()  # (joins the producer)
    assert len(made) <= 4  # the one taken, the queue's two and the one it was blocked on


def test_a_kept_sequence_is_served_as_copies_and_a_shorter_one_from_its_start():
    calls = []

    def make(count):
        calls.append(count)
        for i in range(count):
            yield np.full(3, i), i

    try:
        first = list(prefix("counting", 6, make))
        first[0][0][:] = 99  # a test drawing on its frame does not draw on the kept one
        again = list(prefix("counting", 4, make))
        assert calls == [6]
        assert [(a.tolist(), i) for a, i in again] == [([i] * 3, i) for i in range(4)]
        list(prefix("counting", 8, make))  # longer than kept: made anew
        assert calls == [6, 8]
    finally:
        frames.forget()


def test_a_sequence_too_big_to_keep_is_made_anew(monkeypatch):
    monkeypatch.setattr(frames, "KEEP_BYTES", 5 * 8 * 3)  # five items of three int64
    calls = []

    def make(count):
        calls.append(count)
        return ((np.full(3, i), i) for i in range(count))

    try:
        assert len(list(prefix("small", 5, make))) == 5
        assert len(list(prefix("small", 5, make))) == 5
        assert len(list(prefix("big", 6, make))) == 6
        assert len(list(prefix("big", 6, make))) == 6
        assert calls == [5, 6, 6]  # the small one kept, the big one not
    finally:
        frames.forget()


def test_prefetch_renders_each_key_once_and_plays_keys_it_did_not_schedule():
    made = []

    def make(key):
        made.append(key)
        return [key] * 3

    scenes = Prefetch(make, ["a", "b", "c", "d"], window=1)
    try:
        assert scenes.get("a") == ["a"] * 3
        assert scenes.get("b") == ["b"] * 3
        assert scenes.get("z") == ["z"] * 3  # (not in the list: rendered when asked)
    finally:
        scenes.close()
    assert len(made) == len(set(made)) and {"a", "b", "z"} <= set(made)  # each once (c may have been, after b)
    assert "d" not in made  # beyond the window
