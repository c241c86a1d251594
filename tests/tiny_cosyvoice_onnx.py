"""Tiny stand-ins for CosyVoice's ONNX front-end models, for tests.

They have the same input/output names, dtypes and (dynamic) shapes as the
real files, so code that drives them cannot tell the difference:

* ``campplus.onnx``: input ``input`` float32 [1, T, 80] -> ``output`` float32 [1, 192]
  (per-bin RMS over time, then a fixed random projection and tanh).
* ``speech_tokenizer_v{1,2,3}.onnx``: inputs ``feats`` float32 [1, 128, T] and
  ``feats_length`` int32 [1] -> ``indices`` int32 [1, ceil(T/4)] (a stride-4
  convolution with right padding and argmax over a small codebook; v1 is
  50 Hz upstream, so its stand-in uses stride 2).

Built with the onnx helper API (no torch export), in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17
IR_VERSION = 8


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="voicelab-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_campplus(path: str | Path, seed: int = 0, dim: int = 192) -> Path:
    """Write a tiny campplus-compatible speaker encoder to ``path``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((80, dim)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [
            # the input is mean-subtracted, so pool its spread (per-bin RMS) over time
            helper.make_node("Mul", ["input", "input"], ["squared"]),
            helper.make_node("ReduceMean", ["squared"], ["mean_sq"], axes=[1], keepdims=0),
            helper.make_node("Sqrt", ["mean_sq"], ["pooled"]),
            helper.make_node("MatMul", ["pooled", "proj"], ["projected"]),
            helper.make_node("Tanh", ["projected"], ["output"]),
        ],
        "tiny_campplus",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, dim])],
        initializer=[numpy_helper.from_array(weight, "proj")],
    )
    return _save(graph, Path(path))


def build_speech_tokenizer(path: str | Path, seed: int = 1, codebook: int = 64, stride: int = 4) -> Path:
    """Write a tiny speech tokenizer: [1,128,T] (+ length) -> int32 [1, ceil(T/stride)]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal((codebook, 128, stride)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["feats", "kernel"], ["scores"], strides=[stride],
                             pads=[0, stride - 1], kernel_shape=[stride]),
            # use feats_length (times zero) so the input is a real part of the graph
            helper.make_node("Cast", ["feats_length"], ["length_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["length_f", "zero"], ["no_shift"]),
            helper.make_node("Add", ["scores", "no_shift"], ["shifted"]),
            helper.make_node("ArgMax", ["shifted"], ["best"], axis=1, keepdims=0),
            helper.make_node("Cast", ["best"], ["indices"], to=TensorProto.INT32),
        ],
        "tiny_speech_tokenizer",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "T_tok"])],
        initializer=[
            numpy_helper.from_array(kernel, "kernel"),
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
        ],
    )
    return _save(graph, Path(path))


def build_model_dir(model_dir: str | Path, version: str = "v2", with_yaml: bool = False) -> Path:
    """A model dir holding ``campplus.onnx`` and ``speech_tokenizer_<version>.onnx``.

    ``with_yaml`` adds an empty ``cosyvoice{,2,3}.yaml`` marker so version
    detection by yaml name can be exercised (it is not a loadable config).
    """
    model_dir = Path(model_dir)
    build_campplus(model_dir / "campplus.onnx")
    build_speech_tokenizer(model_dir / f"speech_tokenizer_{version}.onnx", stride=2 if version == "v1" else 4)
    if with_yaml:
        yaml_name = {"v1": "cosyvoice.yaml", "v2": "cosyvoice2.yaml", "v3": "cosyvoice3.yaml"}[version]
        (model_dir / yaml_name).write_text("# tiny test marker\n", encoding="utf-8")
    return model_dir
