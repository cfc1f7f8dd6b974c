"""`ganzhi train-fire-verifier`: train the fire verifier on a folder of labelled photos and export it to ONNX.

A developer's tool, run by hand on data kept outside the repository (docs/fire-verifier.md says where the
data come from, under which licence, and how to lay them out). Every photo is assigned to the training or
the held-out split by the SHA-256 of its bytes, so the split is the same on every machine and survives
renames; only the training split is read here: the decision threshold is chosen on out-of-fold scores of
the training photos (folds by photo), never on the held-out ones, which ``ganzhi bench fire-photos``
alone reads.

Crops are labelled by their photo: every candidate of a non-fire photo is not fire; a candidate of a fire
photo is fire unless a first out-of-fold model scores it below half its photo's best (a red car beside a
burning house; one multiple-instance step, which raised out-of-fold F1 from 0.68 to 0.77 with features fv1 on the first
data set). A photo's score is its highest-scoring candidate's, which is what the per-frame stage plus
verifier does with a photo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from analytics.fire.colour import land_means
from analytics.fire.verifier import CARD_FILE, MODEL_FILE
from analytics.fire.verifier_features import FEATURE_VERSION, N_FEATURES, NAMES, candidate_boxes, crop_features
from ganzhi.verifier_crops import SIM_SEEDS, shrunk, simulator_crops

HELD_OUT_PERCENT = 30
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_FLAGGED = 0.08
"""Threshold choice: the best out-of-fold F1 among thresholds flagging at most this share of non-fire
training photos (the goal is ≤ 10 % on held-out; a little room is kept for the difference)."""
RELABEL_SHARE = 0.5
SHRINK = 2
"""Copies of each training crop shown at tower range."""


@dataclass(frozen=True)
class Photo:
    path: Path
    fire: bool
    sha256: str

    @property
    def held_out(self) -> bool:
        return is_held_out(self.sha256)


@dataclass(frozen=True)
class Provenance:
    source: str
    licence: str
    commit: str


@dataclass
class Table:
    """Candidate crops of a set of photos: features, the photo each came from, and photos' labels."""
    features: np.ndarray
    photo: np.ndarray
    labels: np.ndarray
    """One per photo (1 fire), in photo order."""
    skipped: list[str] = field(default_factory=list)
    parent: np.ndarray | None = None
    """For each row, the row of the candidate it was made from (itself, or the original of a crop shrunk to
    tower range); None when there are no shrunk crops."""

    @property
    def crop_labels(self) -> np.ndarray:
        return self.labels[self.photo]

    @property
    def original(self) -> np.ndarray:
        """Rows that are the photos' own candidates (what the per-frame stage finds on a photo)."""
        return np.ones(len(self.photo), bool) if self.parent is None else self.parent == np.arange(len(self.photo))


def is_held_out(sha256: str) -> bool:
    return int(sha256[:8], 16) % 100 < HELD_OUT_PERCENT


def read_photos(root: Path, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...]) -> list[Photo]:
    """Photos under ``root/<dir>`` for each labelled dir; byte-identical files are kept once (a duplicate
    in both classes is dropped: its label is unknown), sorted by hash so the order is deterministic."""
    seen: dict[str, Photo] = {}
    conflicting: set[str] = set()
    for dirs, fire in ((fire_dirs, True), (other_dirs, False)):
        for name in dirs:
            folder = root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is not a directory")
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest in seen and seen[digest].fire != fire:
                    conflicting.add(digest)
                seen.setdefault(digest, Photo(path, fire, digest))
    return [p for d, p in sorted(seen.items()) if d not in conflicting]


def split(photos: list[Photo]) -> tuple[list[Photo], list[Photo]]:
    return [p for p in photos if not p.held_out], [p for p in photos if p.held_out]


def load_image(path: Path) -> np.ndarray | None:
    """A BGR image, or None when the file is not a picture OpenCV can read (it is reported, not guessed)."""
    data = np.frombuffer(path.read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return image if image is not None and image.ndim == 3 and min(image.shape[:2]) >= 16 else None


def crop_table(photos: list[Photo], shrink: int = 0, seed: int = 0) -> Table:
    """Features of every candidate the per-frame stage finds on each photo, and of ``shrink`` copies of
    each shrunk to tower range (``verifier_crops.shrunk``). Photos OpenCV cannot read are skipped and
    named; a readable photo without candidates keeps its label and has no rows."""
    rows, owner, parent, labels, skipped = [], [], [], [], []
    rng = np.random.default_rng(seed)
    for photo in photos:
        image = load_image(photo.path)
        if image is None:
            skipped.append(photo.path.name)
            continue
        index = len(labels)
        labels.append(int(photo.fire))
        means = land_means(image)
        for box in candidate_boxes(image, means=means):
            row = len(rows)
            made = [crop_features(image, box, means)] + [shrunk(image, box, means, rng) for _ in range(shrink)]
            for features in (f for f in made if f is not None):
                rows.append(features)
                owner.append(index)
                parent.append(row)
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, N_FEATURES), np.float32)
    return Table(features, np.asarray(owner, np.intp), np.asarray(labels, np.intp), skipped,
                 np.asarray(parent, np.intp) if shrink else None)


def photo_scores(table: Table, crop_scores: np.ndarray) -> np.ndarray:
    """Each photo's highest score among its own candidates; −1 for a photo without candidates (never
    flagged)."""
    scores = np.full(len(table.labels), -1.0)
    keep = table.original
    np.maximum.at(scores, table.photo[keep], crop_scores[keep])
    return scores


@dataclass(frozen=True)
class Figures:
    photos: int
    fire: int
    recall: float
    flagged_non_fire: float
    precision: float
    f1: float

    def line(self) -> str:
        return (f"{self.photos} photos ({self.fire} fire): recall {self.recall:.3f}  "
                f"non-fire flagged {self.flagged_non_fire:.1%}  precision {self.precision:.3f}  F1 {self.f1:.3f}")


def figures(labels: np.ndarray, flagged: np.ndarray) -> Figures:
    fire = labels == 1
    tp, fp = int((flagged & fire).sum()), int((flagged & ~fire).sum())
    fn = int((~flagged & fire).sum())
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return Figures(len(labels), int(fire.sum()), recall, fp / max(int((~fire).sum()), 1), precision,
                   2 * precision * recall / max(precision + recall, 1e-9))


def _model(seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(n_estimators=150, max_depth=3, learning_rate=0.08, subsample=1.0,
                                      random_state=seed)


def out_of_fold(table: Table, labels: np.ndarray, folds: int, seed: int, extra: Extra | None = None) -> np.ndarray:
    """Crop scores of the training photos, each from a model that saw neither the photo nor its shrunk
    copies (``extra`` crops, from elsewhere, are in every fold's training)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = table.crop_labels
    scores = np.zeros(len(y))
    k = max(2, min(folds, int(np.bincount(y, minlength=2).min())))
    for fit, held in StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(table.features, y, table.photo):
        model = _model(seed).fit(*_with(extra, table.features[fit], labels[fit]))
        scores[held] = model.predict_proba(table.features[held])[:, 1] if len(model.classes_) == 2 else 0.0
    return scores


@dataclass(frozen=True)
class Extra:
    """Labelled crops that are not photos of the data set (the simulator's tower renderings)."""
    features: np.ndarray
    labels: np.ndarray


def _with(extra: Extra | None, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if extra is None or not len(extra.labels):
        return features, labels
    return np.concatenate([features, extra.features]), np.concatenate([labels, extra.labels])


def relabel(table: Table, scores: np.ndarray, share: float = RELABEL_SHARE) -> np.ndarray:
    """Crop labels with the evident bystanders of fire photos turned negative (one multiple-instance
    step): a fire photo's candidate scoring out of fold below ``share`` of its photo's best is not fire.
    A shrunk copy takes its original's label."""
    best = photo_scores(table, scores)
    labels = table.crop_labels.copy()
    labels[(labels == 1) & (scores < share * best[table.photo])] = 0
    return labels if table.parent is None else labels[table.parent]


def choose_threshold(labels: np.ndarray, scores: np.ndarray, max_flagged: float = MAX_FLAGGED) -> float:
    """The threshold with the best photo-level F1 among those flagging at most ``max_flagged`` of the
    non-fire photos (ties: the higher threshold)."""
    best = (-1.0, 1.0)
    for t in np.unique(np.round(scores[scores >= 0], 4)):
        f = figures(labels, scores >= t)
        if f.flagged_non_fire <= max_flagged and (f.f1, t) > best:
            best = (f.f1, float(t))
    return best[1]


def export(model, path: Path) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onnx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
                           options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    raw = onnx.SerializeToString()
    path.write_bytes(raw)
    return raw


def simulator_extra(say=print) -> Extra:
    crops = list(simulator_crops())
    say(f"simulator: {len(crops)} candidate crops ({sum(c.fire for c in crops)} fire) from seeds {SIM_SEEDS}")
    return Extra(np.stack([c.features for c in crops]).astype(np.float32), np.asarray([int(c.fire) for c in crops]))


def train(root: Path, out: Path, provenance: Provenance, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...],
          seed: int = 7, folds: int = 5, shrink: int = SHRINK, simulator: bool = True, say=print) -> dict:
    """Train on the training split of ``root`` (its crops, ``shrink`` tower-range copies of each, and the
    simulator's crops when ``simulator``) and write ``verifier.onnx`` and ``verifier.json`` to ``out``."""
    photos = read_photos(root, fire_dirs, other_dirs)
    training, held = split(photos)
    say(f"{len(photos)} photos: {len(training)} training, {len(held)} held out (not read)")
    table = crop_table(training, shrink, seed)
    if table.skipped:
        say(f"skipped {len(table.skipped)} unreadable: {', '.join(table.skipped[:10])}")
    if len(np.unique(table.crop_labels)) < 2:
        raise ValueError("the training split needs candidate crops of both fire and non-fire photos")
    extra = simulator_extra(say) if simulator else None
    stage = figures(table.labels, photo_scores(table, np.ones(len(table.photo))) >= 0)
    crop_labels = relabel(table, out_of_fold(table, table.crop_labels, folds, seed, extra))
    oof_crops = out_of_fold(table, crop_labels, folds, seed, extra)
    oof = photo_scores(table, oof_crops)
    threshold = choose_threshold(table.labels, oof)
    cross = figures(table.labels, oof >= threshold)
    tower = ~table.original & (crop_labels == 1)
    tower_recall = float((oof_crops[tower] >= threshold).mean()) if tower.any() else None
    model = _model(seed).fit(*_with(extra, table.features, crop_labels))
    out.mkdir(parents=True, exist_ok=True)
    raw = export(model, out / MODEL_FILE)
    fitted = figures(table.labels, photo_scores(table, model.predict_proba(table.features)[:, 1]) >= threshold)
    card = {
        "feature_version": FEATURE_VERSION, "n_features": N_FEATURES, "feature_names": list(NAMES),
        "sha256": hashlib.sha256(raw).hexdigest(), "threshold": round(threshold, 4),
        "relabelled_crops": int((table.crop_labels != crop_labels).sum()),
        "model": f"scikit-learn GradientBoostingClassifier {model.get_params()['n_estimators']} trees, depth 3",
        "trained": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "seed": seed,
        "data": {"source": provenance.source, "licence": provenance.licence, "commit": provenance.commit,
                 "split": f"held out when int(sha256[:8], 16) % 100 < {HELD_OUT_PERCENT}",
                 "training_photos": len(table.labels), "training_fire": int(table.labels.sum()),
                 "training_crops": int(table.original.sum()), "tower_range_copies": int((~table.original).sum()),
                 "simulator_crops": 0 if extra is None else len(extra.labels),
                 "simulator_seeds": list(SIM_SEEDS) if simulator else [],
                 "held_out_photos": len(held)},
        "training_figures": {"stage_alone": stage.__dict__, "out_of_fold": cross.__dict__,
                             "in_sample": fitted.__dict__},
        "tower_range_fire_recall_out_of_fold": tower_recall,
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    say(f"training, per-frame stage alone:        {stage.line()}")
    say(f"training, + verifier (out of fold):     {cross.line()}  threshold {threshold:.4f}")
    say(f"training, + verifier (in sample):       {fitted.line()}")
    if tower_recall is not None:
        say(f"training, fire crops shrunk to tower range, out of fold: {tower_recall:.1%} at the threshold")
    say(f"wrote {out / MODEL_FILE} ({len(raw)} bytes) and {out / CARD_FILE}")
    return card
