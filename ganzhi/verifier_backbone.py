"""The fire verifier's frozen backbone taken from a committed model (``verifier.onnx``), for retraining the
head without torch.

The committed ONNX graph is the frozen EfficientNet-Lite0 (ImageNet weights, Apache-2.0; see
``verifier_net``) followed by one linear layer and a sigmoid. Its backbone is what every later model runs,
so a new logistic head can be learned on the pooled 1280 channels the graph already computes and written
back into the same graph in place of the old head: the backbone's weights (stored as float16) are kept
bit for bit. Needs ``onnx`` (the ``fire-train`` extra) besides onnxruntime; no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from analytics.fire.verifier import MODEL_DIR, MODEL_FILE, as_input

EMBEDDING = 1280
POOLED = "/backbone/ReduceMean_output_0"
"""The graph's tensor of the head's 1280 channels averaged over the patch (the linear head's input)."""
HEAD_WEIGHT, HEAD_BIAS = "head.weight", "head.bias"
BATCH = 32


class OnnxNet:
    """``embed`` and ``export`` as ``verifier_net.Net`` has them, over the backbone of an existing model."""

    def __init__(self, path: Path = MODEL_DIR / MODEL_FILE) -> None:
        import onnx

        self.model = onnx.load_from_string(path.read_bytes())
        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        probe.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """N × ``EMBEDDING`` float32 descriptions of N BGR patches."""
        out = [np.zeros((0, EMBEDDING), np.float32)]
        name = self.session.get_inputs()[0].name
        for i in range(0, len(patches), BATCH):
            out.append(self.session.run([POOLED], {name: as_input(patches[i:i + BATCH])})[0].astype(np.float32))
        return np.concatenate(out)

    def export(self, weights: np.ndarray, bias: float) -> bytes:
        """The graph with its linear head replaced (``weights`` over the embedding, ``bias``); the head is
        stored as float16 like every large weight (``verifier_net.half_stored``)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        new = {HEAD_WEIGHT: weights.reshape(1, -1).astype(np.float32), HEAD_BIAS: np.asarray([bias], np.float32)}
        found = set()
        for init in model.graph.initializer:
            for name, value in new.items():
                if init.name == name:
                    init.CopyFrom(numpy_helper.from_array(value, name))
                elif init.name == name + "_f16":
                    init.CopyFrom(numpy_helper.from_array(value.astype(np.float16), name + "_f16"))
                else:
                    continue
                found.add(name)
        if found != set(new):
            raise ValueError(f"{MODEL_FILE} has no linear head named {sorted(set(new) - found)}")
        return model.SerializeToString()
