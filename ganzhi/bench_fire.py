"""`ganzhi bench fire`: detection quality on the simulator's labelled sequences (frame and event level,
precision / recall / F1), the per-frame cost at 1280×720 on one core, and first fire frame → alert time
through the real worker, broker and database."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import cv2
import numpy as np

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.pipeline import VERIFY_FROM_PX, weigh
from analytics.fire.verifier import Verifier
from analytics.fire.video import VideoDetector
from simulators.scenes import KINDS, SceneSpec, render


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def line(self) -> str:
        p = self.tp / max(self.tp + self.fp, 1)
        r = self.tp / max(self.tp + self.fn, 1)
        f1 = 2 * p * r / max(p + r, 1e-9)
        counts = f"tp {self.tp}, fp {self.fp}, fn {self.fn}, tn {self.tn}"
        return f"precision {p:.3f}  recall {r:.3f}  F1 {f1:.3f}  ({counts})"


def quality(seeds: int, alert_level: bool, first_seed: int = 100, verified: bool = False) -> None:
    """Frame level: a frame is positive when any candidate is on it; a true positive when the frame shows
    fire and a candidate box touches it. Event level: a sequence raises an event (an alert, with
    ``alert_level``) or not. Delay: frames from ignition to the first true candidate."""
    frames, events = Tally(), Tally()
    per_kind: dict[str, Tally] = {}
    delays = []
    verifier = Verifier.load() if verified else None
    for kind in KINDS:
        kind_tally = per_kind.setdefault(kind, Tally())
        for seed in range(first_seed, first_seed + seeds):
            spec = SceneSpec(kind, seed)
            detector = VideoDetector()
            raised = False
            for image, label in render(spec):
                found = detector.process("bench", None, image, spec.horizon)
                found = [c for c in (weigh(verifier, image, found) if verifier else found)
                         if not alert_level or c.confidence >= ALERT_CONFIDENCE]
                hit = any(label.box and _touch(c.box, label.box) for c in found)
                if label.fire:
                    frames.tp += hit
                    frames.fn += not hit
                    frames.fp += bool(found) and not hit
                else:
                    frames.fp += bool(found)
                    frames.tn += not found
                if found and not raised:
                    raised = True
                    if label.fire and hit:
                        delays.append(label.index - spec.ignite)
            tally = [events, kind_tally]
            for t in tally:
                if spec.has_fire:
                    t.tp += raised
                    t.fn += not raised
                else:
                    t.fp += raised
                    t.tn += not raised
    level = "alert-level (confidence ≥ 0.5)" if alert_level else "candidate-level (any confidence)"
    level += ", with the learned verifier" if verified else ""
    print(f"{level}, {seeds} sequences per kind (seeds {first_seed}–{first_seed + seeds - 1}) × {len(KINDS)} kinds, "
          "40 frames each")
    print(f"  frames: {frames.line()}")
    print(f"  events: {events.line()}")
    for kind, t in per_kind.items():
        print(f"    {kind:<11} raised {t.tp + t.fp} of {seeds}")
    if delays:
        print(f"  first candidate after ignition: median {statistics.median(delays)} frames "
              f"(max {max(delays)}); at 2 fps that is {statistics.median(delays) / 2:.1f} s")


def speed(frames: int, runs: int, verified: bool = False) -> None:
    """Per-frame detector cost on one core (OpenCV single-threaded), fire scenes at 1280×720; with
    ``verified``, also the detector plus the learned verifier on its flame candidates (``pipeline.weigh``)."""
    cv2.setNumThreads(1)
    images = [image for image, _ in render(SceneSpec("fire", 7, frames=frames))]
    stages = [("per-frame stage", None)] + ([("per-frame stage + verifier", Verifier.load())] if verified else [])
    for name, judge in stages:
        results, judged = [], 0
        for _ in range(runs):
            detector = VideoDetector()
            started = time.perf_counter()
            for image in images:
                found = detector.process("bench", None, image, 250.0)
                if judge is not None:
                    weigh(judge, image, found)
                    judged += sum(c.cue == "flame" and max(c.box[2:]) >= VERIFY_FROM_PX for c in found)
            results.append((time.perf_counter() - started) / len(images))
        per = statistics.median(results)
        extra = f"; {judged / runs:.0f} flame candidates judged per run of {len(images)} frames" if judge else ""
        print(f"{name}, 1280×720, one core: median {per * 1000:.1f} ms = {1 / per:.0f} fps "
              f"(runs: {', '.join(f'{1 / r:.0f}' for r in results)} fps){extra}")
    jpeg = cv2.imencode(".jpg", images[-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    started = time.perf_counter()
    for _ in range(50):
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    print(f"JPEG decode of a {len(jpeg) // 1024} KiB frame: {(time.perf_counter() - started) / 50 * 1000:.1f} ms")


def _touch(a: tuple, b: tuple, grow: int = 8) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah
