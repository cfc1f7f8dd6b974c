"""Fine-tuning the last block(s) of the fire verifier's EfficientNet-Lite0, for training only (the ``fire-train``
extra: torch).

The committed verifier keeps the ImageNet network frozen and learns a logistic head over its 1280 pooled
channels. This module lets the last ``blocks`` MBConv blocks and the 1 × 1 head convolution learn too, on
augmented copies of the training patches as a tower camera would see them: the patch zoomed in by up to a
quarter and shifted (a box found a little larger or off-centre), mirrored, its exposure changed by up to
±25 % (every channel by the same factor: hue is kept, colour is the signal) and JPEG-encoded at quality
45–80 (the towers' range). The early blocks stay frozen and their output is computed once per copy
(``front``), so each fit runs only the tail: minutes on one CPU core. Batch normalisation keeps its ImageNet
statistics (a few hundred photos would only add noise to them).

After fitting, ``Net.embed`` and ``Net.export`` use the fine-tuned tail; the logistic head the trainer fits
over the new embedding is the one exported (the head learned here only drives the fine-tuning).
docs/fire-verifier.md (session 18) has the out-of-fold figures that decide whether it pays.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import torch

from analytics.fire.verifier import as_input
from ganzhi.train_fire_verifier import Recipe
from ganzhi.verifier_net import BATCH, EMBEDDING, Net

ZOOM = (0.75, 1.0)
"""Side of the random square cut out of the patch and resized back, as a share of the patch."""
EXPOSURE = (0.75, 1.25)
JPEG_QUALITY = (45, 81)


def describe(r: Recipe) -> str:
    return (f"last {r.blocks} MBConv block(s) and the head convolution fine-tuned: {r.epochs} epochs, AdamW lr "
            f"{r.tail_lr:g}, {r.copies} augmented copies a patch (zoom {ZOOM[0]:g}–1, mirror, exposure "
            f"×{EXPOSURE[0]:g}–{EXPOSURE[1]:g}, JPEG {JPEG_QUALITY[0]}–{JPEG_QUALITY[1] - 1}), ImageNet batch-norm "
            f"statistics kept")


def augmented(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One tower-camera copy of a BGR patch: zoom/shift jitter, mirror, exposure, JPEG (hue untouched)."""
    side = patch.shape[0]
    cut = max(8, round(side * rng.uniform(*ZOOM)))
    x0, y0 = (int(rng.integers(0, side - cut + 1)) for _ in range(2))
    out = cv2.resize(patch[y0:y0 + cut, x0:x0 + cut], (side, side), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = exposed(out, rng.uniform(*EXPOSURE))
    quality = int(rng.integers(*JPEG_QUALITY))
    return cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def exposed(patch: np.ndarray, gain: float) -> np.ndarray:
    """The patch with every pixel's channels multiplied by ``gain``, but never past 255 in any of them: a
    saturating pixel is brightened only as far as its brightest channel allows, so its hue is kept."""
    wide = patch.astype(np.float32)
    room = 255.0 / np.maximum(wide.max(axis=2, keepdims=True), 1.0)
    return np.rint(wide * np.minimum(gain, room)).astype(np.uint8)


class FineTuner:
    """The split of ``net``'s backbone into a frozen front and a trainable tail (both modules of ``net``
    itself: fitting changes ``net``)."""

    def __init__(self, net: Net, recipe: Recipe) -> None:
        self.net, self.recipe = net, recipe
        self.model = net.backbone.model
        if not 0 <= recipe.blocks <= len(self.model._blocks):
            raise ValueError(f"fine-tune {recipe.blocks} blocks: the network has {len(self.model._blocks)}")
        self.start = len(self.model._blocks) - recipe.blocks
        self.pristine = copy.deepcopy(self._tail_state())

    def _tail_modules(self) -> list[torch.nn.Module]:
        m = self.model
        return [*m._blocks[self.start:], m._conv_head]

    def _tail_state(self) -> list[dict]:
        return [module.state_dict() for module in self._tail_modules()]

    def reset(self) -> None:
        """Back to the ImageNet weights (between folds)."""
        for module, state in zip(self._tail_modules(), copy.deepcopy(self.pristine), strict=True):
            module.load_state_dict(state)

    def front(self, patches: np.ndarray) -> torch.Tensor:
        """The frozen blocks' output for N BGR patches (computed once; the tail is fitted on it)."""
        m, out = self.model, []
        with torch.no_grad():
            for i in range(0, len(patches), BATCH):
                x = (torch.from_numpy(as_input(patches[i:i + BATCH])) - 127.0) / 128.0
                x = m._swish(m._bn0(m._conv_stem(x)))
                for block in m._blocks[:self.start]:
                    x = block(x)
                out.append(x)
        return torch.cat(out)

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        for block in m._blocks[self.start:]:
            x = block(x)
        return m._swish(m._bn1(m._conv_head(x))).mean((2, 3))

    def embed(self, fronts: torch.Tensor) -> np.ndarray:
        """N × ``EMBEDDING`` descriptions from cached front outputs, with the tail as it is now."""
        out = [np.zeros((0, EMBEDDING), np.float32)]
        with torch.no_grad():
            for i in range(0, len(fronts), 256):
                out.append(self.tail(fronts[i:i + 256]).numpy())
        return np.concatenate(out)

    def fit(self, epochs_of: list[torch.Tensor], labels: np.ndarray) -> None:
        """Fit the tail (and a throw-away linear head) by class-balanced logistic loss; ``epochs_of[e]`` are
        the front outputs of the patches (same order as ``labels``) shown in epoch e (cycled)."""
        r = self.recipe
        torch.manual_seed(r.seed)
        y = torch.from_numpy(labels.astype(np.float32))
        positives = float(y.sum())
        weight = torch.tensor((len(y) - positives) / max(positives, 1.0))
        head = torch.nn.Linear(EMBEDDING, 1)
        torch.nn.init.zeros_(head.weight)
        tail_params = [p for module in self._tail_modules() for name, p in module.named_parameters()
                       if "_bn" not in name]
        optimiser = torch.optim.AdamW([{"params": tail_params, "lr": r.tail_lr},
                                       {"params": head.parameters(), "lr": r.head_lr}], weight_decay=r.weight_decay)
        scale = self._scale(epochs_of[0])
        self.model.eval()  # batch-norm statistics stay ImageNet's
        generator = torch.Generator().manual_seed(r.seed)
        for epoch in range(r.epochs):
            fronts = epochs_of[epoch % len(epochs_of)]
            for rows in torch.randperm(len(y), generator=generator).split(64):
                logits = head(self.tail(fronts[rows]) / scale).flatten()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows], pos_weight=weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def _scale(self, fronts: torch.Tensor) -> torch.Tensor:
        """The embedding's per-channel spread before fitting (the throw-away head sees standardised inputs)."""
        return torch.from_numpy(self.embed(fronts[:2048]).std(0) + 1e-3)
