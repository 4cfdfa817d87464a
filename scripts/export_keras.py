"""Exports small Keras models to ONNX with tf2onnx, for tests/models/test_keras_models.py.

TensorFlow is not a test dependency (it is large and pins its own numpy), so the exported files
are committed under tests/data/keras/ and the tests compare onnxplain against onnxruntime on
them. Re-create them in a separate environment:

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf2onnx
    /tmp/tfvenv/bin/python scripts/export_keras.py

Weights are random (seeded) with non-trivial BatchNorm statistics; what matters is the graph
tf2onnx writes: NHWC inputs with Transposes around every Conv, Dense as MatMul + Add, fused
BatchNorm as Mul + Add, Reshape through shape arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf2onnx

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "keras"
L = tf.keras.layers


def mlp() -> tf.keras.Model:
    inp = tf.keras.Input((20,), name="features")
    h = L.Dense(32, activation="relu")(inp)
    h = L.Dense(16, activation="tanh")(h)
    out = L.Dense(5, activation="softmax")(h)
    return tf.keras.Model(inp, out, name="mlp")


def cnn() -> tf.keras.Model:
    inp = tf.keras.Input((12, 12, 3), name="image")
    h = L.Conv2D(8, 3, padding="same")(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(16, 3, strides=2, padding="valid", activation="elu")(h)
    h = L.DepthwiseConv2D(3, padding="same")(h)
    h = L.AveragePooling2D(2, padding="same")(h)
    h = L.Flatten()(h)
    h = L.Dense(10)(h)
    out = L.Softmax()(h)
    return tf.keras.Model(inp, out, name="cnn")


def resnet() -> tf.keras.Model:
    inp = tf.keras.Input((16, 16, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU(max_value=6.0)(h)
    for filters, stride in [(8, 1), (16, 2)]:
        shortcut = h
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(h)
        y = L.BatchNormalization()(y)
        y = L.ReLU()(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        h = L.ReLU()(L.Add()([y, shortcut]))
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dropout(0.3)(h)
    out = L.Dense(4, activation="softmax")(h)
    return tf.keras.Model(inp, out, name="resnet")


def randomize(model: tf.keras.Model, rng: np.random.Generator) -> None:
    """Non-zero biases (tf2onnx drops an Add of zeros) and non-trivial BatchNorm statistics."""
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            n = gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                               rng.uniform(0.5, 1.5, n)])


def main() -> None:
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for build in (mlp, cnn, resnet):
        model = build()
        randomize(model, rng)
        spec = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=model.inputs[0].name)]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
        proto.producer_name = f"tf2onnx {tf2onnx.__version__} (tensorflow {tf.__version__}) via scripts/export_keras.py"
        path = OUT / f"{model.name}.onnx"
        path.write_bytes(proto.SerializeToString())
        print(f"wrote {path}: {sorted({n.op_type for n in proto.graph.node})}")


if __name__ == "__main__":
    main()
