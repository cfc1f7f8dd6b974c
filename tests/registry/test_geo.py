"""The division index under concurrent use (issue 10 §3): the API locates points from many threads at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from registry.geo import DivisionIndex
from registry.reference import county_features

# Twenty fresh indexes, each queried first by eight threads released together: before the index serialised its
# GEOS queries, this aborted the interpreter ("unaligned tcache chunk detected", "double free") in nearly every run.
_CONCURRENT_FIRST_USE = textwrap.dedent("""
    import threading
    import numpy as np
    from registry.geo import DivisionIndex
    from registry.reference import county_features

    rows = [(str(f["properties"]["adcode"]), f["properties"]["name"], f["properties"]["level"], f["geometry"])
            for f in county_features()]
    mismatches = 0
    for round in range(20):
        index = DivisionIndex.from_rows(rows)
        min_lon, min_lat, max_lon, max_lat = index.bounds
        rng = np.random.default_rng(round)
        lons, lats = rng.uniform(min_lon, max_lon, (8, 20)), rng.uniform(min_lat, max_lat, (8, 20))
        answers = [None] * 8
        start = threading.Barrier(8)

        def locate(n):
            start.wait()
            answers[n] = [index.locate(lon, lat) for lon, lat in zip(lons[n], lats[n])]

        threads = [threading.Thread(target=locate, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        mismatches += sum(answers[n] != index.locate_many(lons[n], lats[n]) for n in range(8))
    print("mismatches", mismatches)
""")


def _rows() -> list[tuple[str, str, str, dict]]:
    return [(str(f["properties"]["adcode"]), f["properties"]["name"], f["properties"]["level"], f["geometry"])
            for f in county_features()]


def test_eight_threads_locating_at_once_neither_crash_nor_disagree():
    # In a subprocess: a heap corruption aborts that interpreter and fails this test instead of killing pytest.
    run = subprocess.run([sys.executable, "-c", _CONCURRENT_FIRST_USE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.split() == ["mismatches", "0"]


def test_locates_the_finest_county_and_nothing_outside():
    index = DivisionIndex.from_rows(_rows())
    assert len(index) == 10
    assert index.locate(126.97, 46.65) == "231202"  # central Suihua, in Beilin District
    assert index.name("231202") == "北林区"
    assert index.locate(116.4, 39.9) is None  # Beijing
    codes = index.locate_many(np.array([126.97, 116.4]), np.array([46.65, 39.9]))
    assert codes == ["231202", None]
