"""Frames for the fire tests, rendered once and ahead of the detector.

Rendering a synthetic sequence costs as much as detecting on it, or several times more (a 1280×720 scene of
``simulators.scenes`` is ~0.2 s a frame of NumPy on the 2-core CI box). Both release the GIL in their array
work, so ``ahead`` renders the next frames in a thread while the test runs the detector on this one: the
same frames, in the same order, from the same deterministic generator.

``prefix`` keeps a sequence played to its end for the rest of the module (KEEP_BYTES at most, least recently
played dropped first) and serves a shorter or equal one of the same maker from it, as copies, where the maker
draws frame i from i alone (a shorter sequence is a longer one's start). ``Prefetch`` renders a module's
independent sequences side by side in the background, a few tests ahead.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

import cv2
import numpy as np

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ahead(items: Iterable[T], depth: int = 3) -> Iterator[T]:
    """``items``, produced by a thread up to ``depth`` ahead of the consumer. A consumer that stops early
    (a failed assert, a ``return``) stops the producer at its next item; an error in the producer is raised
    in the consumer where the item would have come."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            put(_Failed(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="render-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def parallel(items: Iterable, finish: Callable[..., T], workers: int = 2, depth: int = 4) -> Iterator[T]:
    """``finish(*item)`` of each item, in order: ``items`` (the sequential part of a frame maker: its random
    draws) run ahead in a thread, the finishing (clipping, sway, JPEG: independent per frame) on ``workers``
    threads, at most ``depth`` frames in flight."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="finish")
    try:
        for future in ahead((pool.submit(finish, *item) for item in items), depth=depth):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


KEEP_BYTES = 600 * 2**20
"""The most kept at once (a 1280×720 sequence of 40 frames is 110 MB): the least recently played go first."""
_made: OrderedDict[Hashable, list] = OrderedDict()


def _keep(key: Hashable, kept: list) -> None:
    if not kept:
        return  # (too big)
    _made[key] = kept
    size = {k: sum(map(_nbytes, v)) for k, v in _made.items()}
    while len(_made) > 1 and sum(size[k] for k in _made) > KEEP_BYTES:
        _made.popitem(last=False)


def _kept(key: Hashable) -> list | None:
    if key in _made:
        _made.move_to_end(key)
    return _made.get(key)


def _copy(item):
    """A copy of an item's arrays: what a test or the detector does to a frame it is given stays out of the kept
    sequence."""
    if isinstance(item, tuple):
        return tuple(x.copy() if isinstance(x, np.ndarray) else x for x in item)
    return item.copy() if isinstance(item, np.ndarray) else item


def _nbytes(item) -> int:
    return sum(x.nbytes for x in (item if isinstance(item, tuple) else (item,)) if isinstance(x, np.ndarray))


def _keeping(items: Iterable[T], kept: list) -> Iterator[T]:
    """``items``, copied into ``kept`` as they pass; a sequence too big to keep is not (``kept`` is emptied)."""
    size = 0
    for item in items:
        if size <= KEEP_BYTES:
            kept.append(_copy(item))
            size += _nbytes(item)
            if size > KEEP_BYTES:
                kept.clear()
        yield item


def prefix(key: Hashable, count: int, make: Callable[[int], Iterable[T]]) -> Iterator[T]:
    """The first ``count`` items of a sequence whose i-th item does not depend on its length: served from a
    longer (or equal) one kept under ``key``, else made with ``make(count)`` and kept."""
    longest = _kept(key)
    if longest is not None and len(longest) >= count:
        yield from map(_copy, longest[:count])
        return
    kept: list = []
    yield from ahead(_keeping(make(count), kept))
    _keep(key, kept)


class Prefetch:
    """Whole sequences rendered in the background, a few tests ahead of the one that plays them: the suite's
    parametrized scenes are independent, so two of them render side by side (the CI box has two cores) while
    the detector runs on a third. ``get`` returns a sequence's items (rendering it at once if it was not
    scheduled) and schedules the next ``window`` keys of ``keys`` after it."""

    def __init__(self, make: Callable[[Hashable], Iterable], keys: list[Hashable], workers: int = 2,
                 window: int = 2) -> None:
        import concurrent.futures

        self.make, self.keys, self.window = make, keys, window
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="prefetch")
        self.futures: dict[Hashable, concurrent.futures.Future] = {}

    def _render(self, key: Hashable) -> list:
        return list(self.make(key))

    def get(self, key: Hashable) -> list:
        if key in self.keys:
            i = self.keys.index(key)
            for k in self.keys[i:i + 1 + self.window]:
                if k not in self.futures:
                    self.futures[k] = self.pool.submit(self._render, k)
        future = self.futures.pop(key, None)
        self.futures[key] = None  # (played: never scheduled again)
        return future.result() if future is not None else self._render(key)

    def close(self) -> None:
        for future in self.futures.values():
            if future is not None:
                future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()


def forget() -> None:
    """Drop the kept sequences (a module's are hundreds of MB)."""
    _made.clear()


def from_a_mast(base: np.ndarray, draw: Callable, start: dt.datetime, count: int, fps: float,
                seed: int) -> Iterator[tuple[np.ndarray, dt.datetime]]:
    """``count`` frames of ``base`` with what ``draw(img, t, rng)`` adds, as a tower sends them: sensor noise, the
    mast's sway, JPEG at a tower's quality. The random draws are made in order on one thread, the rest on two."""
    height, width = base.shape[:2]

    def drawn():
        rng = np.random.default_rng(seed + 1)
        for i in range(count):
            t = i / fps
            img = base.copy()
            draw(img, t, rng)
            yield img, rng.normal(0, 2.0, (height, width, 1)).astype(np.float32), t

    def finish(img: np.ndarray, noise: np.ndarray, t: float):
        img += noise
        sway = np.float32([[1, 0, 1.2 * np.sin(2.1 * t)], [0, 1, 0.6 * np.sin(1.3 * t)]])
        picture = cv2.warpAffine(np.clip(img, 0, 255).astype(np.uint8), sway, (width, height),
                                 borderMode=cv2.BORDER_REPLICATE)
        _, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 60])
        return cv2.imdecode(jpeg, cv2.IMREAD_COLOR), start + dt.timedelta(seconds=t)

    return parallel(drawn(), finish)
