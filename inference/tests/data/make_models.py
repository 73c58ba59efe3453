#!/usr/bin/env python3
"""Generate the tiny ONNX fixtures used by the `tapstream-inference` tests.

Run from anywhere: `python3 inference/tests/data/make_models.py`. It needs only
the `onnx` package (onnx.helper), and writes the `.onnx` files beside itself.
The output is deterministic, so re-running it leaves git clean. The weights
here are repeated by hand in `inference/tests/onnx.rs`, which recomputes the
expected predictions; change both together.

Fixtures (see README.md in this directory for the list with their purpose):
  linear3.onnx          valid: 3 features, MatMul+Add+Softmax, 3 classes, in-graph scaler
  scaled3.onnx          valid: the same graph, 2 classes, with an external scaler
  score.onnx            valid: 3 features, MatMul+Add+Sigmoid, score output [N, 1]
  score1d.onnx          valid: like score.onnx but the output is [N]
  wrong_schema.onnx     broken: tapstream.schema is another schema
  unknown_feature.onnx  broken: a feature name that is not a kernels column
  int64_input.onnx      broken: the input tensor is int64
  wrong_width.onnx      broken: 2 probability columns for 3 labels
  input_width.onnx      broken: input is [N, 4] for 3 features
  missing_metadata.onnx broken: no tapstream.* metadata at all
  threshold2.onnx       broken: tapstream.threshold is 2.0
  mislabelled_fp16.onnx broken: declares fp16, float32 weights
  custom_op.onnx        broken: a node from the custom domain com.example
  external_inside.onnx  valid: linear3.onnx with its weights in external_inside.weights
  external_escape.onnx  broken: external data at ../external_escape.weights
"""

import json
import os

import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13
IR_VERSION = 8

FEATURES = ["Flow Duration", "Dst Port", "Total Fwd Packet"]
LABELS3 = ["BENIGN", "DoS", "PortScan"]

# Row i of W holds the weights of feature i; column j is class j.
W3 = [
    [0.001, 0.002, -0.0005],
    [-0.01, 0.02, 0.03],
    [0.5, -0.25, 0.125],
]
B3 = [1.0, -0.5, 0.25]

W2 = [[1.5, -1.5], [-0.75, 0.75], [0.25, 0.5]]
B2 = [0.1, -0.1]
MEAN2 = [1000.0, 80.0, 10.0]
SCALE2 = [500.0, 40.0, 5.0]

WS = [[0.002], [-0.01], [0.3]]
BS = [-1.0]


def metadata(**overrides):
    """The contract of linear3.onnx, with keys replaced (None removes a key)."""
    props = {
        "tapstream.schema": "cic-ids2017-improved",
        "tapstream.schema_version": "1",
        "tapstream.features": json.dumps(FEATURES),
        "tapstream.scaler": "in-graph",
        "tapstream.labels": json.dumps(LABELS3),
        "tapstream.benign_label": "BENIGN",
        "tapstream.output": "probabilities",
        "tapstream.threshold": "0.5",
        "tapstream.model_name": "fixture-linear3",
        "tapstream.model_version": "1.0.0",
        "tapstream.precision": "fp32",
    }
    for key, value in overrides.items():
        key = "tapstream." + key
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    return props


def flat(rows):
    return [v for row in rows for v in row]


def graph_linear(weights, bias, head, in_type=TensorProto.FLOAT, in_width=3, out_shape=None):
    """features[N, in_width] -> MatMul(W) + B -> head ("softmax", "sigmoid")."""
    n_in = len(weights)
    n_out = len(bias)
    nodes = []
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, [n_in, n_out], flat(weights)),
        helper.make_tensor("B", TensorProto.FLOAT, [n_out], bias),
    ]
    x = "features"
    if in_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["features"], ["x"], to=TensorProto.FLOAT))
        x = "x"
    nodes.append(helper.make_node("MatMul", [x, "W"], ["xw"]))
    nodes.append(helper.make_node("Add", ["xw", "B"], ["logits"]))
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], axis=-1))
        out_name, shape = "out", ["N", n_out]
    elif head == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["out"]))
        out_name, shape = "out", ["N", 1]
    elif head == "sigmoid1d":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["s"]))
        inits.append(helper.make_tensor("flat_shape", TensorProto.INT64, [1], [-1]))
        nodes.append(helper.make_node("Reshape", ["s", "flat_shape"], ["out"]))
        out_name, shape = "out", ["N"]
    else:
        raise ValueError(head)
    if out_shape is not None:
        shape = out_shape
    graph = helper.make_graph(
        nodes,
        "tapstream-fixture",
        [helper.make_tensor_value_info("features", in_type, ["N", in_width])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    return graph


def save(name, graph, props, extra_opsets=(), external=None):
    """Writes the model; `external` = location of all its weights as external data."""
    model = helper.make_model(
        graph,
        producer_name="tapstream make_models.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)]
        + [helper.make_opsetid(d, v) for d, v in extra_opsets],
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, props)
    if not extra_opsets:
        onnx.checker.check_model(model)
    if external is not None:
        blob = b""
        for t in model.graph.initializer:
            raw = t.raw_data or onnx.numpy_helper.to_array(t).tobytes()
            t.ClearField("float_data")
            t.ClearField("int64_data")
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", external), ("offset", str(len(blob))), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            blob += raw
        if not external.startswith(".."):
            with open(os.path.join(HERE, external), "wb") as f:
                f.write(blob)
    path = os.path.join(HERE, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    print(f"wrote {path}")


def main():
    save("linear3.onnx", graph_linear(W3, B3, "softmax"), metadata())
    save(
        "scaled3.onnx",
        graph_linear(W2, B2, "softmax"),
        metadata(
            scaler=json.dumps({"mean": MEAN2, "scale": SCALE2}),
            labels=json.dumps(["BENIGN", "ATTACK"]),
            threshold="0.7",
            model_name="fixture-scaled3",
        ),
    )
    save(
        "score.onnx",
        graph_linear(WS, BS, "sigmoid"),
        metadata(
            output="score",
            labels=json.dumps(["BENIGN", "ATTACK"]),
            threshold="0.25",
            model_name="fixture-score",
        ),
    )
    # Declares fp16, but its weights are float32: refused.
    save(
        "mislabelled_fp16.onnx",
        graph_linear(W3, B3, "softmax"),
        metadata(precision="fp16", model_name="fixture-mislabelled"),
    )
    save(
        "score1d.onnx",
        graph_linear(WS, BS, "sigmoid1d"),
        metadata(
            output="score",
            labels=json.dumps(["ATTACK"]),
            benign_label=None,
            threshold="0.25",
            model_name="fixture-score1d",
        ),
    )
    save("wrong_schema.onnx", graph_linear(W3, B3, "softmax"), metadata(schema="unsw-nb15"))
    save(
        "unknown_feature.onnx",
        graph_linear(W3, B3, "softmax"),
        metadata(features=json.dumps(["Flow Duration", "Dst Port", "Label"])),
    )
    save("int64_input.onnx", graph_linear(W3, B3, "softmax", in_type=TensorProto.INT64), metadata())
    save(
        "wrong_width.onnx",
        graph_linear(W2, B2, "softmax"),
        metadata(),  # three labels, two probability columns
    )
    save(
        "input_width.onnx",
        graph_linear(W3 + [[0.0, 0.0, 0.0]], B3, "softmax", in_width=4),
        metadata(),
    )
    save("missing_metadata.onnx", graph_linear(W3, B3, "softmax"), {})
    save("threshold2.onnx", graph_linear(W3, B3, "softmax"), metadata(threshold="2.0"))
    custom = graph_linear(W3, B3, "softmax")
    custom.node.append(helper.make_node("Mystery", ["out"], ["unused"], domain="com.example"))
    save("custom_op.onnx", custom, metadata(), extra_opsets=[("com.example", 1)])
    save(
        "external_inside.onnx",
        graph_linear(W3, B3, "softmax"),
        metadata(),
        external="external_inside.weights",
    )
    save(
        "external_escape.onnx",
        graph_linear(W3, B3, "softmax"),
        metadata(),
        external="../external_escape.weights",
    )


if __name__ == "__main__":
    main()
