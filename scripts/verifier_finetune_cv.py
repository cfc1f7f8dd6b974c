"""Does fine-tuning the last block(s) of the verifier's network beat the frozen recipe? Nested out of fold on the
cair TRAINING split only (docs/fire-verifier.md, session 18). Never reads the held-out split.

    python scripts/verifier_finetune_cv.py CAIR_DIR --cache-dir /work/bench/finetune [--blocks 1 0]
        [--seeds 7 8 9] [--epochs 5] [--copies 4]

Needs the ``fire-train`` extra (torch). Per fold seed (grouped by photo, stratified 5 outer folds as
``verifier_variants.nested``), for every outer fold:

- ``frozen``: the committed procedure (``fit_head``: relabel, threshold at <= 8 % flagged out of fold, fit) on
  the frozen network's embeddings of the outer-training photos;
- ``tuned``: the crops relabelled as the committed procedure does (inner out of fold, frozen embeddings), the
  last ``--blocks`` MBConv blocks and the head convolution fine-tuned on the outer-training photos' crops and
  their augmented copies (``verifier_finetune``), then ``fit_head`` on the fine-tuned embeddings — what
  ``ganzhi train-fire-verifier --fine-tune`` does.

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


def nested(table: Table, tuner: FineTuner, cached: list[torch.Tensor], frozen: np.ndarray, seed: int
           ) -> tuple[Figures, Figures]:
    from sklearn.model_selection import StratifiedKFold

    flagged = {"frozen": np.zeros(len(table.labels), bool), "tuned": np.zeros(len(table.labels), bool)}
    for fold, (fit, held) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(
            table.labels, table.labels)):
        inner, rows = subset(table, fit)
        scored, held_rows = subset(table, held)
        labels = relabel(inner, out_of_fold(inner, frozen[rows], inner.crop_labels, 5, seed))
        t = time.process_time()
        tuner.reset()
        tuner.fit([c[torch.from_numpy(np.flatnonzero(rows))] for c in cached], labels)
        tuned = tuner.embed(cached[0])
        fit_seconds = time.process_time() - t
        for name, x in (("frozen", frozen), ("tuned", tuned)):
            head = fit_head(inner, x[rows], 5, seed)
            crops = head.model.predict_proba(x[held_rows])[:, 1] if held_rows.any() else np.zeros(0)
            flagged[name][held] = photo_scores(scored, crops) >= head.threshold
            print(f"  seed {seed} fold {fold + 1}: {name:6s} threshold {head.threshold:.3f} "
                  f"{figures(scored.labels, flagged[name][held]).line()}", flush=True)
        print(f"  (fine-tuning {fit_seconds:.0f} s CPU)", flush=True)
    return figures(table.labels, flagged["frozen"]), figures(table.labels, flagged["tuned"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--blocks", type=int, nargs="*", default=[1])
    parser.add_argument("--seeds", type=int, nargs="*", default=[7, 8, 9])
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument("--copies", type=int, default=Recipe.copies)
    parser.add_argument("--tail-lr", type=float, default=Recipe.tail_lr)
    a = parser.parse_args()
    photos, _held = split(read_photos(a.root, ("fire_images",), ("normal_images",)))
    table = crop_table(photos)
    print(f"{len(table.labels)} training photos ({int(table.labels.sum())} fire), {len(table.photo)} candidates",
          flush=True)
    net = Net()
    for blocks in a.blocks:
        recipe = Recipe(blocks=blocks, copies=a.copies, epochs=a.epochs, tail_lr=a.tail_lr)
        tuner = FineTuner(net, recipe)
        cached = fronts(tuner, table, recipe.copies, a.cache_dir / f"front-b{blocks}-c{recipe.copies}.pt")
        frozen = tuner.embed(cached[0])
        print(describe(recipe), flush=True)
        for seed in a.seeds:
            base, tuned = nested(table, tuner, cached, frozen, seed)
            print(f"blocks {blocks} seed {seed} nested frozen: {base.line()}", flush=True)
            print(f"blocks {blocks} seed {seed} nested tuned:  {tuned.line()}", flush=True)
        tuner.reset()


if __name__ == "__main__":
    main()
