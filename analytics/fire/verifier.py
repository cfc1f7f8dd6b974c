"""The learned fire verifier: a gradient-boosted model over colour-texture features of candidate crops,
run on CPU with onnxruntime.

The model and its card (``models/verifier.json``: feature-spec version, SHA-256 of the ONNX file, decision
threshold, the data it was trained on) are made by ``ganzhi train-fire-verifier`` and committed together.
``Verifier.load`` refuses a model whose file does not match its card or whose feature version is not the
one this code computes: scoring with a mismatched feature vector would be silent nonsense.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from analytics.fire.colour import ColourParams, land_means
from analytics.fire.verifier_features import FEATURE_VERSION, N_FEATURES, RULES, crop_features

MODEL_DIR = Path(__file__).parent / "models"
MODEL_FILE = "verifier.onnx"
CARD_FILE = "verifier.json"


class VerifierError(Exception):
    """The model on disk cannot be used: missing, altered, or made for other features."""


@dataclass(frozen=True)
class Card:
    feature_version: str
    n_features: int
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
        if card.feature_version != FEATURE_VERSION or card.n_features != N_FEATURES:
            raise VerifierError(f"model made for features {card.feature_version}×{card.n_features}, "
                                f"this code computes {FEATURE_VERSION}×{N_FEATURES}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core per worker
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
        verifier = cls(session, card)
        verifier.predict(np.zeros((1, N_FEATURES), np.float32))  # the first run costs ~0.1–0.5 s: not on a frame
        return verifier

    def score(self, frame: np.ndarray, boxes: list[tuple[int, int, int, int]],
              means: tuple[float, float, float] | None = None, colour: ColourParams = RULES
              ) -> list[float]:
        """Probability of fire for each box (x, y, w, h) of a BGR frame; ``means`` are the Celik land means
        (of the whole frame when not given)."""
        if not boxes:
            return []
        means = means or land_means(frame)
        table = np.stack([crop_features(frame, box, means, colour) for box in boxes])
        return self.predict(table)

    def predict(self, table: np.ndarray) -> list[float]:
        """Probability of fire for each row of a feature table (``N_FEATURES`` columns)."""
        probabilities = self.session.run([self._output], {self._input: table.astype(np.float32)})[0]
        return [float(p) for p in probabilities[:, 1]]

    def confirms(self, score: float) -> bool:
        return score >= self.card.threshold


def read_card(text: str) -> Card:
    try:
        data = json.loads(text)
        return Card(str(data["feature_version"]), int(data["n_features"]), str(data["sha256"]),
                    float(data["threshold"]))
    except (ValueError, KeyError, TypeError) as e:
        raise VerifierError(f"fire verifier card unreadable: {e}") from e
