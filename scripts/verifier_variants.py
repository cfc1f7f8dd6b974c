"""Compare fire-verifier patch recipes out of fold on the cair TRAINING split only (docs/fire-verifier.md,
session 17). Never reads the held-out split.

    python scripts/verifier_variants.py CAIR_DIR --cache /work/bench/variants.npz [--nested] [--boost]
        [--only NAME ...]

Needs ``onnx`` and ``scikit-learn`` besides the project (a separate venv; not torch). The cache holds the
embeddings (delete it after changing a cut).

Every training photo's candidates (the per-frame stage, ``candidate_boxes``) are cut several ways and embedded
once with the committed model's frozen backbone (``--backbone``, onnx + onnxruntime only); each variant is a
way of turning those embeddings into one 1280-number description per candidate. Per variant and fold seed
(7, 8, 9; grouped 5-fold by photo) it prints:

- ``screen``: the committed procedure's out-of-fold photo scores (relabelling included), best photo F1 among
  thresholds flagging at most 10 % of non-fire photos, the photo-level average precision, and the errors at
  that threshold by kind (picture-sized fires missed, small spots flagged);
- ``nested``: outer 5 folds by photo; inside each the whole ``fit_head`` (relabel, threshold at <= 8 %
  flagged, fit) on the outer-training photos; each outer-held photo scored by a model that never saw it.

Photo-level cuts (the "surround at photo scale" and "tighter crops inside picture-sized regions" of the
doc's error list):

- ``ctx``: a small box's square is at least ``f`` x the photo's shorter side (instead of 2 x the box);
- ``grid``: a box whose longer side is at least ``g`` x the photo's shorter side is described by the mean of
  the embeddings of its tight square and of the tight squares of its 2 x 2 cells (optionally with the p2
  patch);
- ``--boost``: a gradient-boosted head over 32 principal components of the embedding plus the box's geometry.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analytics.fire.colour import land_means
from analytics.fire.verifier_features import MIN_PATCH_PX, PATCH_SIDE, candidate_boxes, patch
from ganzhi.train_fire_verifier import (
    Table,
    figures,
    fit_head,
    load_image,
    out_of_fold,
    photo_scores,
    read_photos,
    relabel,
    split,
    subset,
)

CTX_FRACTIONS = (0.125, 0.25, 0.4)


def square(image: np.ndarray, cx: float, cy: float, half: float, side: int = PATCH_SIDE) -> np.ndarray:
    """The square of half-side ``half`` centred on (cx, cy), cut as ``patch`` cuts (edge repeated)."""
    half = max(round(half), MIN_PATCH_PX // 2)
    # patch() uses half = max(w, h): a box of side `half` centred on (cx, cy) gives exactly this square
    return patch(image, (round(cx - half / 2), round(cy - half / 2), half, half), side)


def tight(image, box):
    x, y, w, h = box
    return square(image, x + w / 2, y + h / 2, max(w, h) / 2)


def cells(image, box):
    x, y, w, h = box
    out = []
    for i in range(2):
        for j in range(2):
            cw, ch = w / 2, h / 2
            out.append(square(image, x + cw * (i + 0.5), y + ch * (j + 0.5), max(cw, ch) / 2))
    return out


def build(root: Path, backbone: Path, cache: Path):
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        return {k: z[k] for k in z.files}
    from ganzhi.verifier_backbone import OnnxNet

    photos, _held = split(read_photos(root, ("fire_images",), ("normal_images",)))
    net = OnnxNet(backbone)
    rows = {"p2": [], "tight": [], "cells": []} | {f"ctx{f}": [] for f in CTX_FRACTIONS}
    owner, labels, rel, boxes = [], [], [], []
    for photo in photos:
        image = load_image(photo.path)
        if image is None:
            continue
        index = len(labels)
        labels.append(int(photo.fire))
        short = min(image.shape[:2])
        for box in candidate_boxes(image, means=land_means(image)):
            x, y, w, h = box
            owner.append(index)
            boxes.append(box)
            rel.append(max(w, h) / short)
            rows["p2"].append(patch(image, box))
            for f in CTX_FRACTIONS:
                half = max(max(w, h), f * short / 2)
                rows[f"ctx{f}"].append(square(image, x + w / 2, y + h / 2, half))
            rows["tight"].append(tight(image, box))
            rows["cells"].extend(cells(image, box) if max(w, h) / short >= 0.25 else [])
    out = {"photo": np.asarray(owner), "labels": np.asarray(labels), "rel": np.asarray(rel),
           "boxes": np.asarray(boxes)}
    for name, patches in rows.items():
        t = time.process_time()
        out[name] = net.embed(np.stack(patches)) if patches else np.zeros((0, 1280), np.float32)
        print(f"embedded {len(patches)} {name} patches in {time.process_time() - t:.0f} s CPU", flush=True)
    np.savez(cache, **out)
    return out


def variants(d) -> dict[str, np.ndarray]:
    rel, p2 = d["rel"], d["p2"]
    big = rel >= 0.25
    cell = np.zeros_like(p2)
    cell[big] = d["cells"].reshape(-1, 4, p2.shape[1]).mean(1)
    out = {"p2 (committed)": p2}
    for f in CTX_FRACTIONS:
        out[f"ctx{f}"] = d[f"ctx{f}"]
    for g in (0.5, 0.8):
        large = rel >= g
        for name, mix in (("grid", (d["tight"] + 4 * cell) / 5), ("grid+p2", (p2 + d["tight"] + 4 * cell) / 6)):
            v = p2.copy()
            v[large] = mix[large]
            out[f"{name}@{g}"] = v
    # two cuts per box, one head: embeddings averaged (= the head's logits averaged) or side by side
    out["mean(p2,ctx0.4)"] = (p2 + d["ctx0.4"]) / 2
    out["concat(p2,ctx0.4)"] = np.hstack([p2, d["ctx0.4"]])
    small = rel < 0.25
    both = p2.copy()
    both[small] = d["ctx0.4"][small]
    both[rel >= 0.5] = ((d["tight"] + 4 * cell) / 5)[rel >= 0.5]
    out["ctx0.4 small + grid@0.5"] = both
    return out


def geometry(d) -> np.ndarray:
    """Colour-free numbers of each box: its size against the photo, its shape."""
    b = d["boxes"].astype(float)
    return np.column_stack([np.log(d["rel"]), np.log(b[:, 2] / b[:, 3])])


def boosted():
    """A gradient-boosted head: the embedding reduced to 32 principal components, the box's geometry kept."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reduce = ColumnTransformer([("net", make_pipeline(StandardScaler(), PCA(32, random_state=0)), slice(0, -2))],
                               remainder="passthrough")
    return make_pipeline(reduce, HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3,
                                                                class_weight="balanced", random_state=0))


def screen(table: Table, x: np.ndarray, seed: int, rel: np.ndarray, max_flagged: float = 0.10) -> dict:
    """Out-of-fold photo F1 at the best threshold flagging <= ``max_flagged``, the photo-level average
    precision, and the errors at that threshold by kind: fire photos missed whose largest candidate is at
    least half the photo's shorter side (picture-sized), non-fire photos flagged by a candidate under a
    tenth of it (a small spot)."""
    from sklearn.metrics import average_precision_score

    labels = relabel(table, out_of_fold(table, x, table.crop_labels, 5, seed))
    crops = out_of_fold(table, x, labels, 5, seed)
    scores = photo_scores(table, crops)
    best, threshold = (0.0, 0.0), 1.0
    for t in np.unique(scores[scores >= 0]):
        f = figures(table.labels, scores >= t)
        if f.flagged_non_fire <= max_flagged and f.f1 > best[0]:
            best, threshold = (f.f1, f.flagged_non_fire), t
    top = np.full(len(table.labels), -1)
    for row in np.argsort(crops):
        top[table.photo[row]] = row  # the photo's best-scoring candidate (the last written is the highest)
    largest = np.zeros(len(table.labels))
    np.maximum.at(largest, table.photo, rel)
    fire = table.labels == 1
    missed, flagged = fire & (scores < threshold), ~fire & (scores >= threshold)
    return {"f1": best[0], "flagged": best[1], "ap": average_precision_score(table.labels, scores),
            "missed": int(missed.sum()), "missed_large": int((missed & (largest >= 0.5)).sum()),
            "false": int(flagged.sum()), "false_small": int((flagged & (top >= 0) & (rel[top] < 0.1)).sum())}


def nested(table: Table, x: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedKFold

    flagged = np.zeros(len(table.labels), bool)
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(table.labels, table.labels):
        inner, rows = subset(table, fit)
        head = fit_head(inner, x[rows], 5, seed)
        scored, held_rows = subset(table, held)
        crops = head.model.predict_proba(x[held_rows])[:, 1] if held_rows.any() else np.zeros(0)
        flagged[held] = photo_scores(scored, crops) >= head.threshold
    return figures(table.labels, flagged)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--backbone", type=Path, default=Path("analytics/fire/models/verifier.onnx"))
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--nested", action="store_true")
    parser.add_argument("--boost", action="store_true", help="gradient-boosted head over PCA-32 + box geometry")
    parser.add_argument("--seeds", type=int, nargs="*", default=[7, 8, 9])
    a = parser.parse_args()
    d = build(a.root, a.backbone, a.cache)
    table = Table(np.zeros((len(d["photo"]), 1, 1, 3), np.uint8), d["photo"], d["labels"])
    print(f"{len(d['labels'])} training photos ({int(d['labels'].sum())} fire), {len(d['photo'])} candidates; "
          f"boxes >= 0.25 / 0.5 / 0.8 of the shorter side: {int((d['rel'] >= .25).sum())} / "
          f"{int((d['rel'] >= .5).sum())} / {int((d['rel'] >= .8).sum())}", flush=True)
    every = variants(d)
    if a.boost:
        import ganzhi.train_fire_verifier as trainer

        trainer._model = boosted
        every = {f"boost {k}": np.hstack([v, geometry(d)]) for k, v in every.items() if k in ("p2 (committed)",
                                                                                           "mean(p2,ctx0.4)")}
    for name, x in every.items():
        if a.only and name not in a.only:
            continue
        parts = [screen(table, x, s, d["rel"]) for s in a.seeds]
        f1 = " / ".join(f"{p['f1']:.3f} ({p['flagged']:.1%})" for p in parts)
        ap = " / ".join(f"{p['ap']:.3f}" for p in parts)
        errors = " / ".join(f"{p['missed']} ({p['missed_large']}) + {p['false']} ({p['false_small']})" for p in parts)
        print(f"{name:24s} F1 (flagged) seeds {a.seeds}: {f1}  mean {np.mean([p['f1'] for p in parts]):.3f}; "
              f"AP {ap}; missed (picture-sized) + flagged (small spot): {errors}", flush=True)
        if a.nested:
            for s in a.seeds:
                f = nested(table, x, s)
                print(f"{name:16s} nested seed {s}: {f.line()}", flush=True)


if __name__ == "__main__":
    main()
