"""`ganzhi bench fire --towers N`: the detector on the harsher tower sequences (``simulators.tower_scenes``):
camera sway, JPEG at tower quality, exposure steps, lamps, beacons, slow movers, dust, low sun, smoke over a
grey sky. Alert level only (what pages someone), per frame rate, per scene kind, with time to alert.

A positive sequence counts as found when an alert-level candidate touching the fire's box comes after
ignition; any alert-level candidate elsewhere or earlier, and any on a look-alike, is a false alert.
Held-out seeds (from ``HELD_OUT_FROM``) are always played; tuning seeds (0–9) too, reported apart, when asked.
A rate ``2+burst`` is 2 fps plus a 2 s burst at 10 fps every 10 s, the only way a 2 fps tower lets the
flicker cue see flames."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.pipeline import weigh
from analytics.fire.verifier import Verifier
from analytics.fire.video import VideoDetector
from simulators.tower_scenes import HELD_OUT_FROM, KINDS, POSE, POSITIVE, TowerSpec, render

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


def play(spec: TowerSpec, detect: Callable | None = None) -> Outcome:
    """Run one sequence through a fresh detector; times the detector alone (one OpenCV thread)."""
    detector = VideoDetector()
    detect = detect or (lambda image, t: detector.process("bench", None, image, spec.horizon, at=spec.at(t),
                                                          pose=POSE))
    out = Outcome(spec.kind, spec.seed, spec.fps)
    for image, label in render(spec):
        started = time.perf_counter()
        found = detect(image, label.t)
        out.seconds.append(time.perf_counter() - started)
        alerts = [c for c in found if c.confidence >= ALERT_CONFIDENCE]
        if not alerts:
            continue
        true = label.fire and label.box is not None and any(_touch(c.box, label.box) for c in alerts)
        if true and not out.found:
            out.found, out.delay_s = True, round(label.t - spec.ignite_s, 2)
        elif not true:
            out.false_alert = True
    return out


def rate(text: str) -> tuple[float, float]:
    """'2' → 2 fps; '2+burst' → 2 fps plus a 2 s burst at 10 fps every 10 s (docs/devices.md)."""
    fps, _, burst = text.partition("+")
    if burst not in ("", "burst"):
        raise ValueError(f"frame rate {text!r}: a number, optionally followed by +burst")
    return float(fps), (BURST_EVERY_S if burst else 0.0)


def run(seeds: int, rates: tuple[str, ...], tuning: bool = False, kinds: tuple[str, ...] = KINDS,
        verified: bool = False, held_out_from: int = HELD_OUT_FROM) -> None:
    """Held-out seeds (from ``held_out_from``) always; the tuning seeds as well, reported apart, with ``tuning``;
    with ``verified``, flame candidates go through the learned verifier's confidence term as in
    ``FirePipeline.detect``."""
    if held_out_from < HELD_OUT_FROM:
        raise ValueError(f"held-out tower seeds start at {HELD_OUT_FROM} or later; lower ones were tuned on")
    cv2.setNumThreads(1)
    verifier = Verifier.load() if verified else None
    for first in ((0, held_out_from) if tuning else (held_out_from,)):
        label = "TUNING" if first == 0 else "held-out"
        print(f"tower sequences, {label} seeds {first}–{first + seeds - 1}, {len(kinds)} kinds, 24 s each "
              f"(ignition at 8 s), alert level (confidence ≥ {ALERT_CONFIDENCE})"
              f"{', with the learned verifier' if verified else ''}")
        for text in rates:
            fps, every = rate(text)
            tallies: dict[str, KindTally] = {k: KindTally() for k in kinds}
            for kind in kinds:
                for seed in range(first, first + seeds):
                    spec = TowerSpec(kind, seed, fps=fps, burst_every_s=every)
                    tallies[kind].runs.append(play(spec, _verified(spec, verifier) if verifier else None))
            _report(text, tallies, kinds)


def _verified(spec: TowerSpec, verifier: Verifier) -> Callable:
    detector = VideoDetector()
    return lambda image, t: weigh(verifier, image, detector.process("bench", None, image, spec.horizon,
                                                                     at=spec.at(t), pose=POSE))


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
