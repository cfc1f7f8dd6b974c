"""The learned fire verifier: a small convolutional network (ImageNet-pretrained EfficientNet-Lite0 and a
logistic head learned on fire photos) over a patch around each candidate box, run on CPU with onnxruntime.

The model and its card (``models/verifier.json``: patch recipe, SHA-256 of the ONNX file, decision
threshold, the data it was trained on) are made by ``ganzhi train-fire-verifier`` and committed together.
``Verifier.load`` refuses a model whose file does not match its card or whose feature version is not the
one this code cuts: scoring a patch cut another way would be silent nonsense.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from analytics.fire.verifier_features import PATCH_SIDE, PATCH_VERSION, patch

MODEL_DIR = Path(__file__).parent / "models"
MODEL_FILE = "verifier.onnx"
CARD_FILE = "verifier.json"


class VerifierError(Exception):
    """The model on disk cannot be used: missing, altered, or made for other features."""


@dataclass(frozen=True)
class Card:
    patch_version: str
    patch_side: int
    sha256: str
    threshold: float
    """A crop scoring at least this is fire; chosen on the training split only."""


class Verifier:
    def __init__(self, session: ort.InferenceSession, card: Card) -> None:
        self.session, self.card = session, card
        self._input = session.get_inputs()[0].name
        self._output = next(o.name for o in session.get_outputs() if "prob" in o.name)

    @classmethod
    def load(cls, directory: Path = MODEL_DIR) -> Verifier:
        model, card_path = directory / MODEL_FILE, directory / CARD_FILE
        try:
            raw, card_text = model.read_bytes(), card_path.read_text(encoding="utf-8")
        except OSError as e:
            raise VerifierError(f"fire verifier model not readable: {e}") from e
        card = read_card(card_text)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != card.sha256:
            raise VerifierError(f"{model} has SHA-256 {digest}, its card says {card.sha256}")
        if card.patch_version != PATCH_VERSION or card.patch_side != PATCH_SIDE:
            raise VerifierError(f"model made for patches {card.patch_version}×{card.patch_side}, "
                                f"this code cuts {PATCH_VERSION}×{PATCH_SIDE}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core per worker
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
        verifier = cls(session, card)
        verifier.predict(np.zeros((1, PATCH_SIDE, PATCH_SIDE, 3), np.uint8))  # the first run is slow: not on a frame
        return verifier

    def score(self, frame: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[float]:
        """Probability of fire for each box (x, y, w, h) of a BGR frame."""
        if not boxes:
            return []
        return self.predict(np.stack([patch(frame, box) for box in boxes]))

    def predict(self, patches: np.ndarray) -> list[float]:
        """Probability of fire for each BGR patch (N × ``PATCH_SIDE`` × ``PATCH_SIDE`` × 3, uint8)."""
        return [float(p) for p in self.session.run([self._output], {self._input: as_input(patches)})[0]]

    def confirms(self, score: float) -> bool:
        return score >= self.card.threshold


def read_card(text: str) -> Card:
    try:
        data = json.loads(text)
        return Card(str(data["patch_version"]), int(data["patch_side"]), str(data["sha256"]),
                    float(data["threshold"]))
    except (ValueError, KeyError, TypeError) as e:
        raise VerifierError(f"fire verifier card unreadable: {e}") from e


def as_input(patches: np.ndarray) -> np.ndarray:
    """The network's input: RGB planes, 0–255 as float32 (the model scales them itself)."""
    return np.ascontiguousarray(patches[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
