"""`ganzhi bench fire-photos`: the per-frame stage and the learned verifier on real still photographs.

Photos come from labelled folders (``--fire-dir`` / ``--non-fire-dir``) or a YOLO-labelled set
(``--yolo-labels``: an empty label file is a photo without fire, a box of a fire class makes it a fire photo).
With ``--fresh`` every photo is scored: a set that no model was trained or tuned on, to be read once.
Otherwise only the held-out split (by file hash, ``train_fire_verifier.is_held_out``) is scored; the training
figures printed beside it come from the model's card (out of fold and in sample), or are recomputed with
``--train``. A photo is flagged by the stage alone when the colour rules find any candidate on it, and by
stage + verifier when any candidate scores at least the model's threshold. Each split's line ``where lost``
says whether a missed fire photo had no candidate at all (the colour stage lost it) or only candidates the
verifier scored under its threshold; ``--save-misses`` draws those photos, and the non-fire photos flagged,
with every candidate's box and score, for looking at.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from analytics.fire.verifier import CARD_FILE, MODEL_DIR, Verifier
from ganzhi.train_fire_verifier import Figures, Photo, crop_table, figures, photo_scores, split


def run(photos: list[Photo], where: str, model_dir: Path = MODEL_DIR, with_train: bool = False,
        save_misses: Path | None = None, fresh: bool = False, training_only: bool = False,
        say=print) -> dict[str, Figures]:
    """Score the held-out split of ``photos`` (and the training split with ``with_train``); with ``fresh``
    every photo: a set no model was trained or tuned on, scored whole (read it once); with ``training_only``
    the training split alone, in sample, leaving the held-out split unread."""
    verifier = Verifier.load(model_dir)
    if fresh:
        say(f"{len(photos)} photos under {where}, all scored (a fresh set: no model was trained or tuned on it); "
            f"threshold {verifier.card.threshold}")
        return _score("fresh", photos, verifier, say, save_misses)
    training, held = split(photos)
    if training_only:
        say(f"{len(photos)} photos under {where}: {len(training)} training scored in sample (the model was fitted "
            f"on them), {len(held)} held out not read; threshold {verifier.card.threshold}")
        return _score("training", training, verifier, say, save_misses)
    say(f"{len(photos)} photos under {where}: {len(training)} training, {len(held)} held out; "
        f"threshold {verifier.card.threshold}")
    out = _score("held-out", held, verifier, say, save_misses)
    card = json.loads((model_dir / CARD_FILE).read_text(encoding="utf-8"))
    for name, f in card.get("training_figures", {}).items():
        say(f"training (card), {name + ':':<21} {Figures(**f).line()}")
    if with_train:
        out |= _score("training", training, verifier, say, save_misses)
    return out


def say_skipped(skipped: list[tuple[str, str]], say=print, names: int = 10) -> None:
    """One line naming the pictures a labelled set could not use, grouped by why (at most ``names`` each)."""
    if not skipped:
        return
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped:
        by_reason.setdefault(reason, []).append(name)
    parts = [f"{reason}: {', '.join(found[:names])}" + (f" and {len(found) - names} more" if len(found) > names
                                                           else "") for reason, found in by_reason.items()]
    say(f"skipped {len(skipped)} pictures ({'; '.join(parts)})")


def _score(name: str, photos: list, verifier: Verifier, say, save_misses: Path | None = None
           ) -> dict[str, Figures]:
    table = crop_table(photos)
    if table.skipped:
        say(f"{name}: skipped {len(table.skipped)} unreadable photos")
    started = time.perf_counter()
    crops = np.asarray(verifier.predict(table.patches)) if len(table.photo) else np.zeros(0)
    onnx_us = (time.perf_counter() - started) * 1e6 / max(len(table.photo), 1)
    stage = figures(table.labels, photo_scores(table, np.ones(len(table.photo))) >= 0)
    verified = figures(table.labels, photo_scores(table, crops) >= verifier.card.threshold)
    say(f"{name}, per-frame stage alone:     {stage.line()}")
    say(f"{name}, stage + verifier:          {verified.line()}")
    best = photo_scores(table, crops)
    fire = table.labels == 1
    say(f"{name}, where lost: {int((fire & (best < 0)).sum())} fire photos without a candidate (colour stage), "
        f"{int((fire & (best >= 0) & (best < verifier.card.threshold)).sum())} with candidates all under the "
        f"threshold (verifier); {int((~fire & (best >= verifier.card.threshold)).sum())} non-fire flagged")
    if save_misses is not None:
        written = draw_misses(table, crops, verifier.card.threshold, save_misses / name)
        say(f"{name}: {written} missed or wrongly flagged photos drawn in {save_misses / name}")
    say(f"{name}: {len(table.photo)} candidate crops; model {onnx_us:.1f} µs per crop (batched), "
        f"patch + model {_per_crop_us(photos[:20], verifier):.0f} µs per crop (one by one)")
    return {f"{name}_stage": stage, f"{name}_verified": verified}


def _per_crop_us(photos: list, verifier: Verifier) -> float:
    """What the pipeline pays per judged candidate: cutting its patch and one model call."""
    from analytics.fire.verifier_features import candidate_boxes
    from ganzhi.train_fire_verifier import load_image

    spent, crops = 0.0, 0
    for photo in photos:
        image = load_image(photo.path)
        if image is None:
            continue
        for box in candidate_boxes(image):
            started = time.perf_counter()
            verifier.score(image, [box])
            spent += time.perf_counter() - started
            crops += 1
    return spent * 1e6 / max(crops, 1)


def draw_misses(table, crops: np.ndarray, threshold: float, folder: Path) -> int:
    """Each missed fire photo (``miss-``) and flagged non-fire photo (``flag-``) as a PNG with its
    candidates' boxes and scores (green at or above the threshold, red under), its best score in the name."""
    from ganzhi.train_fire_verifier import load_image

    best = photo_scores(table, crops)
    wrong = np.flatnonzero((table.labels == 1) & (best < threshold) | (table.labels == 0) & (best >= threshold))
    folder.mkdir(parents=True, exist_ok=True)
    for i in wrong:
        image = load_image(table.paths[i])
        thick = max(1, image.shape[1] // 300)
        for row in np.flatnonzero((table.photo == i) & table.original):
            x, y, w, h = table.boxes[row]
            colour = (0, 255, 0) if crops[row] >= threshold else (0, 0, 255)
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, thick)
            cv2.putText(image, f"{crops[row]:.2f}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, colour, thick)
        kind = "miss" if table.labels[i] == 1 else "flag"
        cv2.imwrite(str(folder / f"{kind}-{best[i]:.3f}-{table.paths[i].stem}.png"), image)
    return len(wrong)
