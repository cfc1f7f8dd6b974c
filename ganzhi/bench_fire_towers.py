"""`ganzhi bench fire --towers N`: the detector on the harsher tower sequences (``simulators.tower_scenes``):
camera sway, JPEG at tower quality, exposure steps, lamps, beacons, slow movers, dust, low sun, smoke over a
grey sky. Alert level only (what pages someone), per frame rate, per scene kind, with time to alert.

A positive sequence counts as found when an alert-level candidate touching the fire's box comes after
ignition; any alert-level candidate elsewhere or earlier, and any on a look-alike, is a false alert.
Held-out seeds (from ``HELD_OUT_FROM``) are always played; tuning seeds (0–9) too, reported apart, when asked.
A rate ``2+burst`` is 2 fps plus a 2 s burst at 10 fps every 10 s, the only way a 2 fps tower lets the
flicker cue see flames.

At the rates in ``pairs`` (the towers' default 2 fps), every scene is also seen from its second tower
(``TowerSpec.tower = 1``: bearings crossing at the subject) and both towers' candidates become detections and
fire events as in the fire worker (``pipeline.sighted``, ``fusion.belongs_to``, ``fusion.combined_confidence``;
a known track is touched when 5 s have passed or it is 0.1 stronger, as ``FirePipeline._record`` does), scored
per *event*: the fire paged (the detections on the fire alone, combined, reached the alert threshold after
ignition) or was only listed, and false pages (an event that reached the threshold while its detections on the
fire alone did not: with none on the fire, or carried over it by a detection that was not on the fire).
The per-tower lines are the first tower's."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire import fusion
from analytics.fire.pipeline import TOUCH_EVERY_S, sighted, weigh
from analytics.fire.store import Camera, Detection
from analytics.fire.verifier import Verifier
from analytics.fire.video import Candidate, VideoDetector
from simulators.tower_scenes import HELD_OUT_FROM, KINDS, POSITIVE, TowerSpec, render

BURST_EVERY_S = 10.0


@dataclass
class Outcome:
    """One sequence: whether it raised a true alert, a false one, and how long after ignition."""
    kind: str
    seed: int
    fps: float
    found: bool = False
    false_alert: bool = False
    delay_s: float | None = None
    seconds: list[float] = field(default_factory=list)
    """Detector time per frame."""


@dataclass
class KindTally:
    runs: list[Outcome] = field(default_factory=list)

    def line(self, kind: str) -> str:
        n = len(self.runs)
        if kind in POSITIVE:
            delays = [r.delay_s for r in self.runs if r.delay_s is not None]
            late = sum(1 for d in delays if d > 10.0)
            when = f"median {statistics.median(delays):4.1f} s, max {max(delays):4.1f} s" if delays else "—"
            return (f"    {kind:<18} alerted {sum(r.found for r in self.runs)}/{n}  ({late} after 10 s)  "
                    f"time to alert {when}  false alerts {sum(r.false_alert for r in self.runs)}")
        return f"    {kind:<18} false alerts {sum(r.false_alert for r in self.runs)}/{n}"


@dataclass
class EventOutcome:
    """One scene seen from two towers, at the level of fire events."""
    kind: str
    paged: bool = False
    """The detections on the fire, combined as their event combines them, reached the alert threshold."""
    listed: bool = False
    """The fire had an event, below the threshold throughout."""
    delay_s: float | None = None
    crossing: bool = False
    """It paged while no single detection of it was at the threshold: the towers corroborated each other."""
    false_pages: list[str] = field(default_factory=list)
    """Cues of the events that paged while their detections on the fire alone were under the threshold."""


@dataclass
class _Known:
    detection: Detection
    event_id: int
    touched: float
    on_fire: bool


@dataclass
class _Events:
    """The fire worker's fusion over the bench's two towers, in memory."""
    events: dict[int, list[Detection]] = field(default_factory=dict)
    known: dict[tuple[str, int], _Known] = field(default_factory=dict)
    paged: dict[int, float] = field(default_factory=dict)
    """Event id → scene seconds when it first reached the alert threshold."""

    def add(self, camera: Camera, spec: TowerSpec, t: float, c: Candidate, on_fire: bool) -> None:
        key = (camera.code, c.track)
        known = self.known.get(key)
        if known is None:
            d = sighted(camera, (spec.width, spec.height), None, spec.at(t), c, "camera", f"{camera.code}:{c.track}",
                        lambda lon, lat: camera.division)
            event_id = fusion.belongs_to(d, self.events)
            event_id = len(self.events) + 1 if event_id is None else event_id
            self.events.setdefault(event_id, []).append(d)
            self.known[key] = _Known(d, event_id, t, on_fire)
            return
        known.on_fire |= on_fire
        d = known.detection
        if t - known.touched < TOUCH_EVERY_S and c.confidence < d.confidence + 0.1:
            return
        d.last_seen, d.confidence, d.box, known.touched = spec.at(t), max(d.confidence, c.confidence), c.box, t

    def judge(self, t: float, out: EventOutcome, spec: TowerSpec) -> None:
        """Pages raised at ``t``. The fire's page needs the detections on the fire *alone* (after ignition) to
        reach the threshold together; an event that reaches it otherwise is a false page, even when a detection
        on the fire is among its members (a false detection whose bearing happens to cross the fire's)."""
        for event_id, members in self.events.items():
            mine = [k.detection for k in self.known.values() if k.event_id == event_id and k.on_fire]
            fires = bool(mine) and t >= spec.ignite_s and fusion.combined_confidence(mine) >= ALERT_CONFIDENCE
            if fires and not out.paged:
                out.paged, out.delay_s = True, round(t - spec.ignite_s, 2)
                out.crossing = max(d.confidence for d in mine) < ALERT_CONFIDENCE
            if event_id in self.paged or fusion.combined_confidence(members) < ALERT_CONFIDENCE:
                continue
            self.paged[event_id] = t
            if not fires:
                out.false_pages.append("+".join(sorted({m.cue for m in members})))

    def finish(self, out: EventOutcome) -> None:
        out.listed = not out.paged and any(k.on_fire for k in self.known.values())


def tower_camera(spec: TowerSpec, number: int) -> Camera:
    """The registry's view of one bench tower: its place and pose."""
    p = spec.pose
    return Camera(number, f"tower-{number}", "video_camera", "active", p.lat, p.lon, "231202", None,
                  {"mast_height_m": p.mast_height_m, "heading_deg": p.heading_deg, "tilt_deg": p.tilt_deg,
                   "hfov_deg": p.hfov_deg})


def play(spec: TowerSpec, verifier: Verifier | None = None, pair: bool = False
         ) -> tuple[Outcome, EventOutcome | None]:
    """Run one sequence through a fresh detector; times the first tower's detector alone (one OpenCV thread).
    With ``pair``, the second tower's sequence too, both into fire events."""
    specs = [spec, replace(spec, tower=1)] if pair else [spec]
    detects = [_detector(s, verifier) for s in specs]
    cameras = [tower_camera(s, n + 1) for n, s in enumerate(specs)]
    out, events = Outcome(spec.kind, spec.seed, spec.fps), _Events()
    scored = EventOutcome(spec.kind) if pair else None
    for frames in zip(*(render(s) for s in specs), strict=True):
        (image, label), t = frames[0], frames[0][1].t
        started = time.perf_counter()
        found = detects[0](image, t)
        out.seconds.append(time.perf_counter() - started)
        _score(out, spec, label, found)
        if scored is None:
            continue
        for n, (s, (picture, seen)) in enumerate(zip(specs, frames, strict=True)):
            for c in (found if n == 0 else detects[n](picture, t)):
                events.add(cameras[n], s, t, c, seen.fire and seen.box is not None and _touch(c.box, seen.box))
        events.judge(t, scored, spec)
    if scored is not None:
        events.finish(scored)
    return out, scored


def _detector(spec: TowerSpec, verifier: Verifier | None) -> Callable[[object, float], list[Candidate]]:
    detector = VideoDetector()

    def detect(image, t: float) -> list[Candidate]:
        found = detector.process("bench", None, image, spec.horizon, at=spec.at(t), pose=spec.pose)
        return weigh(verifier, image, found) if verifier is not None else found
    return detect


def _score(out: Outcome, spec: TowerSpec, label, found: list[Candidate]) -> None:
    alerts = [c for c in found if c.confidence >= ALERT_CONFIDENCE]
    if not alerts:
        return
    true = label.fire and label.box is not None and any(_touch(c.box, label.box) for c in alerts)
    if true and not out.found:
        out.found, out.delay_s = True, round(label.t - spec.ignite_s, 2)
    elif not true:
        out.false_alert = True


def rate(text: str) -> tuple[float, float]:
    """'2' → 2 fps; '2+burst' → 2 fps plus a 2 s burst at 10 fps every 10 s (docs/devices.md)."""
    fps, _, burst = text.partition("+")
    if burst not in ("", "burst"):
        raise ValueError(f"frame rate {text!r}: a number, optionally followed by +burst")
    return float(fps), (BURST_EVERY_S if burst else 0.0)


def run(seeds: int, rates: tuple[str, ...], tuning: bool = False, kinds: tuple[str, ...] = KINDS,
        verified: bool = False, held_out_from: int = HELD_OUT_FROM, pairs: tuple[str, ...] = ("2",)) -> None:
    """Held-out seeds (from ``held_out_from``) always; the tuning seeds as well, reported apart, with ``tuning``;
    with ``verified``, flame candidates go through the learned verifier's confidence term as in
    ``FirePipeline.detect``; at the rates in ``pairs``, each scene from two towers, into fire events."""
    if held_out_from < HELD_OUT_FROM < held_out_from + seeds:
        raise ValueError(f"seeds {held_out_from}–{held_out_from + seeds - 1} mix tuning seeds (below "
                         f"{HELD_OUT_FROM}) with held-out ones")
    cv2.setNumThreads(1)
    verifier = Verifier.load() if verified else None
    for first in ((0, held_out_from) if tuning else (held_out_from,)):
        label = "TUNING" if first < HELD_OUT_FROM else "held-out"
        print(f"tower sequences, {label} seeds {first}–{first + seeds - 1}, {len(kinds)} kinds, 24 s each "
              f"(ignition at 8 s), alert level (confidence ≥ {ALERT_CONFIDENCE})"
              f"{', with the learned verifier' if verified else ''}")
        for text in rates:
            fps, every = rate(text)
            tallies: dict[str, KindTally] = {k: KindTally() for k in kinds}
            scenes: list[EventOutcome] = []
            for kind in kinds:
                for seed in range(first, first + seeds):
                    outcome, scored = play(TowerSpec(kind, seed, fps=fps, burst_every_s=every), verifier,
                                           text in pairs)
                    tallies[kind].runs.append(outcome)
                    scenes += [scored] if scored else []
            _report(text, tallies, kinds)
            if text in pairs:
                _report_events(text, scenes)


def _report_events(text: str, scenes: list[EventOutcome]) -> None:
    fires = [s for s in scenes if s.kind in POSITIVE]
    paged = [s for s in fires if s.paged]
    in_time = sum(1 for s in paged if s.delay_s <= 10.0)
    false = [f"{s.kind} ({', '.join(s.false_pages)})" for s in scenes if s.false_pages]
    print(f"  {text} fps, two towers, fire events: fires paged {len(paged)}/{len(fires)} (within 10 s: {in_time}; "
          f"by the towers together, no one detection at the threshold: {sum(s.crossing for s in paged)}), "
          f"listed without paging {sum(s.listed for s in fires)}/{len(fires)}, "
          f"missed {sum(not s.paged and not s.listed for s in fires)}/{len(fires)}; "
          f"scenes with a false page {len(false)}/{len(scenes)}{': ' + '; '.join(false) if false else ''}")
    for kind in dict.fromkeys(s.kind for s in fires):
        mine = [s for s in fires if s.kind == kind]
        delays = [s.delay_s for s in mine if s.paged]
        print(f"    {kind:<18} paged {len(delays)}/{len(mine)} "
              f"({'max ' + format(max(delays), '.1f') + ' s' if delays else '—'}), "
              f"listed {sum(s.listed for s in mine)}")


def _report(text: str, tallies: dict[str, KindTally], kinds: tuple[str, ...]) -> None:
    outcomes = [r for t in tallies.values() for r in t.runs]
    tp = sum(r.found for r in outcomes)
    fp = sum(r.false_alert for r in outcomes)
    positives = sum(1 for r in outcomes if r.kind in POSITIVE)
    in_time = sum(1 for r in outcomes if r.found and r.delay_s <= 10.0)
    seconds = sorted(s for r in outcomes for s in r.seconds)
    median = statistics.median(seconds) if seconds else float("nan")
    print(f"  {text} fps: sequences alerted correctly {tp}/{positives} (within 10 s: {in_time}), "
          f"sequences with a false alert {fp}/{len(outcomes)}; alert precision {tp / max(tp + fp, 1):.2f}, "
          f"recall {tp / max(positives, 1):.2f}, recall within 10 s {in_time / max(positives, 1):.2f}; "
          f"detector {1000 * median:.1f} ms median per 1280×720 frame on one core = {1 / median:.0f} fps")
    for kind in kinds:
        print(tallies[kind].line(kind))


def _touch(a: tuple, b: tuple, grow: int = 12) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah
