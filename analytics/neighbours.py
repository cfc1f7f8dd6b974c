"""A terminal's neighbours for the stuck-sensor rule: the other terminals measuring the same metric on its pole,
and the stations on its river within ``RIVER_KM`` of chainage.

A flat line is a stuck sensor when the world it measures moved and it did not. The terminal's own other
sensors are the cheap evidence (``rules._stuck_judge``); a single-sensor terminal, or a logger whose every
channel froze, has none, and then its neighbours are: a water-level gauge flat for twelve hours while the gauges
up and down the river rose is stuck; one flat while they are flat too is a calm river. Neighbours are asked only
once a line has lasted the metric's flat-line window with no sibling moving (rarely), one query for the series
of all of them, and one for their own drift and spike alerts on the metric (a neighbour that moved by its own fault
is no evidence that the world moved)."""

from __future__ import annotations

import datetime as dt
import time

import psycopg

from analytics import queries
from analytics.rules import MOVED_BY_FAULT, Nearby, Peer, TerminalInfo, may_have_moved
from devices import metric as metric_spec

RIVER_KM = 50.0
"""Stations on the same river this far apart along it (either way) see the same water: a rise passes both
within hours."""
PEERS_TTL_S = 600.0
"""How long a terminal's list of neighbours is kept before the ledger is asked again (they change rarely)."""


class Neighbours:
    """``rules.NeighbourLookup`` over the database, through the connection the rule worker is judging on
    (``conn``, set before each chunk: the lookups belong to the chunk's transaction)."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection | None = None
        self._peers: dict[tuple[int, str], tuple[float, tuple[tuple[int, int, bool], ...], str]] = {}

    def of(self, t: TerminalInfo, metric: str, since: dt.datetime) -> Nearby | None:
        """The neighbours' series of ``metric`` from ``since`` on, with their own drift and spike alerts on it since
        then; None when the terminal has none (or the worker is not judging)."""
        if self.conn is None:
            return None
        peers, where = self._peer_ids(t, metric)
        if not peers:
            return None
        ids = [peer for peer, _, _ in peers]
        found = queries.series_of(self.conn, {peer: {metric: since} for peer in ids})
        # Only a neighbour that moved can have moved by a fault of its own: a calm river's flat line (the common
        # case, asked again and again while it lasts) costs no look at the alerts.
        step = metric_spec(metric).step
        moving = [peer for peer in ids if may_have_moved(found[peer].get(metric, []), step)]
        doubts = queries.doubts_of(self.conn, moving, metric, since, MOVED_BY_FAULT) if moving else {}
        return Nearby(where, tuple(Peer(found[peer].get(metric, []), dt.timedelta(seconds=interval), on_pole,
                                        tuple(doubts.get(peer, ()))) for peer, interval, on_pole in peers))

    def _peer_ids(self, t: TerminalInfo, metric: str) -> tuple[tuple[tuple[int, int, bool], ...], str]:
        key = (t.id, metric)
        held = self._peers.get(key)
        if held is None or time.monotonic() - held[0] > PEERS_TTL_S:
            peers = queries.peers_of(self.conn, t.id, metric, t.pole, t.attrs.get("river"),
                                     t.attrs.get("chainage_km"), RIVER_KM)
            held = self._peers[key] = (time.monotonic(), tuple(peers), _where(t))
        return held[1], held[2]


def _where(t: TerminalInfo) -> str:
    places = ([f"pole {t.pole}"] if t.pole else []) + ([t.attrs["river"]] if t.attrs.get("river") else [])
    return " and ".join(places)
