"""Stamp the benign baseline (`tapstream.baseline`) into an already trained behaviour model,
without retraining: the graph and every other metadata value stay as they are.

    python3 deploy/training/add_baseline.py --tapstream target/release/tapstream \
        --extra /data/labgen --extra /data/labgen2 [--model models/behaviour-mlp.onnx]

It loads the training flows exactly as train_behaviour.py does (same options, same cache),
computes train_behaviour.baseline_json, and rewrites the model and the `onnx_sha256` /
`onnx_bytes` / `baseline` entries of its metrics JSON. train_behaviour.py writes the
baseline itself, so a retrained model needs no stamping.
"""
import hashlib
import json
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_behaviour as T  # noqa: E402


def main() -> None:
    sys.argv, model_arg = _split_model(sys.argv)
    args = T.parse_args()
    path = model_arg or args.out / f"{T.MODEL_NAME}.onnx"
    fl = T.load_flows(args)
    baseline = T.baseline_json(fl)
    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    props["tapstream.baseline"] = baseline
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    onnx.checker.check_model(m, full_check=True)
    blob = m.SerializeToString(deterministic=True)
    path.write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    metrics = path.with_suffix(".metrics.json")
    if metrics.exists():
        mj = json.loads(metrics.read_text(encoding="utf-8"))
        mj.update({"onnx_sha256": sha, "onnx_bytes": len(blob), "baseline": json.loads(baseline)})
        metrics.write_text(json.dumps(mj, indent=2) + "\n", encoding="utf-8")
    T.log(f"wrote {path} ({len(blob)} bytes, sha256 {sha}) with the baseline of "
          f"{int((fl.y == 0).sum())} benign flows")


def _split_model(argv: list[str]) -> tuple[list[str], Path | None]:
    """Takes `--model PATH` out of argv (the rest are train_behaviour.py's options)."""
    if "--model" in argv:
        i = argv.index("--model")
        if i + 1 >= len(argv):
            sys.exit("--model needs a path")
        return argv[:i] + argv[i + 2:], Path(argv[i + 1])
    return argv, None


if __name__ == "__main__":
    main()
