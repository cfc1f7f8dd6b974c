"""Does fine-tuning the last block(s) of the verifier's network beat the frozen recipe? Nested out of fold on the
cair TRAINING split only (docs/fire-verifier.md, session 18). Never reads the held-out split.

    python scripts/verifier_finetune_cv.py CAIR_DIR --cache-dir /work/bench/finetune [--blocks 1 0]
        [--seeds 7 8 9] [--variants frozen tuned tuned+inner] [--epochs 5] [--copies 4] [--tune-seed 7]

Needs the ``fire-train`` extra (torch). Per fold seed (grouped by photo, stratified 5 outer folds as
``verifier_variants.nested``), for every outer fold:

- ``frozen``: the committed procedure (``fit_head``: relabel, threshold at <= 8 % flagged out of fold, fit) on
  the frozen network's embeddings of the outer-training photos;
- ``tuned``: the crops relabelled as the committed procedure does (inner out of fold, frozen embeddings), the
  last ``--blocks`` MBConv blocks and the head convolution fine-tuned on the outer-training photos' crops and
  their augmented copies (``verifier_finetune``), then ``fit_head`` on the fine-tuned embeddings — what
  ``ganzhi train-fire-verifier --fine-tune`` does (the threshold is chosen over a network that saw every
  inner photo);
- ``tuned+inner``: the same fit, but the threshold is chosen on out-of-fold scores whose every inner fold
  fine-tunes its own network (six fits an outer fold).

Each variant prints per-fold figures, the pooled figures and the pooled photo-level average precision.

Each outer-held photo is scored by a model that never saw it; photos' own crops only (no tower-range copies,
no simulator crops), as in sessions 7 and 17. The frozen blocks' outputs of every patch and copy are cached.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ganzhi.train_fire_verifier import (
    Figures,
    Recipe,
    Table,
    _model,
    choose_threshold,
    crop_table,
    figures,
    fit_head,
    out_of_fold,
    photo_scores,
    read_photos,
    relabel,
    split,
    subset,
)
from ganzhi.verifier_finetune import FineTuner, augmented, describe
from ganzhi.verifier_net import Net


def fronts(tuner: FineTuner, table: Table, copies: int, cache: Path) -> list[torch.Tensor]:
    """The frozen blocks' output for the original patches, then for each set of augmented copies."""
    if cache.exists():
        return torch.load(cache)
    rng = np.random.default_rng(tuner.recipe.seed)
    t = time.process_time()
    out = [tuner.front(table.patches)]
    for _ in range(copies):
        out.append(tuner.front(np.stack([augmented(p, rng) for p in table.patches])))
    print(f"front of {len(table.patches)} patches x {copies + 1}: {time.process_time() - t:.0f} s CPU", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return out


def tuned_embedding(tuner: FineTuner, cached: list[torch.Tensor], rows: np.ndarray, labels: np.ndarray
                    ) -> np.ndarray:
    """Every crop's embedding after fine-tuning the tail from ImageNet on the crops ``rows`` (indices)."""
    tuner.reset()
    tuner.fit([c[torch.from_numpy(rows)] for c in cached], labels)
    return tuner.embed(cached[0])


def inner_tuned_threshold(inner: Table, rows: np.ndarray, tuner: FineTuner, cached: list[torch.Tensor],
                          labels: np.ndarray, seed: int) -> float:
    """The threshold chosen as ``fit_head`` chooses it, on out-of-fold scores whose every fold fine-tunes its
    own tail: no inner-held photo was seen by the network that scores it."""
    from sklearn.model_selection import StratifiedGroupKFold

    oof = np.zeros(len(labels))
    for fit, held in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(labels, labels, inner.photo):
        x = tuned_embedding(tuner, cached, rows[fit], labels[fit])
        model = _model().fit(x[rows[fit]], labels[fit])
        oof[held] = model.predict_proba(x[rows[held]])[:, 1]
    return choose_threshold(inner.labels, photo_scores(inner, oof))


def nested(table: Table, tuner: FineTuner, cached: list[torch.Tensor], frozen: np.ndarray, seed: int,
           variants: tuple[str, ...]) -> dict[str, tuple[Figures, float]]:
    """Per variant: pooled figures of the outer-held photos at each outer fold's threshold, and the pooled
    photo-level average precision (threshold-free)."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    scores = {name: np.zeros(len(table.labels)) for name in variants}
    flagged = {name: np.zeros(len(table.labels), bool) for name in variants}
    for fold, (fit, held) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(
            table.labels, table.labels)):
        inner, rows = subset(table, fit)
        scored, held_rows = subset(table, held)
        index = np.flatnonzero(rows)
        labels = relabel(inner, out_of_fold(inner, frozen[rows], inner.crop_labels, 5, seed))
        t = time.process_time()
        for name in variants:
            if name == "tuned+inner":
                threshold = inner_tuned_threshold(inner, index, tuner, cached, labels, seed)
                x = tuned_embedding(tuner, cached, index, labels)
                model = _model().fit(x[rows], labels)
            else:
                x = frozen if name == "frozen" else tuned_embedding(tuner, cached, index, labels)
                head = fit_head(inner, x[rows], 5, seed)
                model, threshold = head.model, head.threshold
            crops = model.predict_proba(x[held_rows])[:, 1] if held_rows.any() else np.zeros(0)
            scores[name][held] = photo_scores(scored, crops)
            flagged[name][held] = scores[name][held] >= threshold
            print(f"  seed {seed} fold {fold + 1}: {name:11s} threshold {threshold:.3f} "
                  f"{figures(scored.labels, flagged[name][held]).line()}", flush=True)
        print(f"  ({time.process_time() - t:.0f} s CPU)", flush=True)
    return {name: (figures(table.labels, flagged[name]), average_precision_score(table.labels, scores[name]))
            for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--blocks", type=int, nargs="*", default=[1])
    parser.add_argument("--seeds", type=int, nargs="*", default=[7, 8, 9])
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument("--copies", type=int, default=Recipe.copies)
    parser.add_argument("--tail-lr", type=float, default=Recipe.tail_lr)
    parser.add_argument("--variants", nargs="*", default=["frozen", "tuned"],
                        help="frozen, tuned (threshold out of fold over the tuned network), tuned+inner (every "
                             "inner fold fine-tunes its own network; 6 fits an outer fold)")
    parser.add_argument("--tune-seed", type=int, default=Recipe.seed, help="seed of the copies and the fitting")
    a = parser.parse_args()
    photos, _held = split(read_photos(a.root, ("fire_images",), ("normal_images",)))
    table = crop_table(photos)
    print(f"{len(table.labels)} training photos ({int(table.labels.sum())} fire), {len(table.photo)} candidates",
          flush=True)
    net = Net()
    for blocks in a.blocks:
        recipe = Recipe(blocks=blocks, copies=a.copies, epochs=a.epochs, tail_lr=a.tail_lr, seed=a.tune_seed)
        tuner = FineTuner(net, recipe)
        name = f"front-b{blocks}-c{recipe.copies}-s{recipe.seed}.pt"
        cached = fronts(tuner, table, recipe.copies, a.cache_dir / name)
        frozen = tuner.embed(cached[0])
        print(describe(recipe), flush=True)
        for seed in a.seeds:
            for name, (f, ap) in nested(table, tuner, cached, frozen, seed, tuple(a.variants)).items():
                print(f"blocks {blocks} seed {seed} nested {name:11s}: {f.line()}  AP {ap:.3f}", flush=True)
        tuner.reset()


if __name__ == "__main__":
    main()
