"""Peak memory of an explanation: each (model, method) in a fresh process, so peaks do not mix.

VGG-16 and ResNet-50 with random weights (bench/archs.py), 224x224, batch 8, 2 threads by
default, as a new user would run them: `ox.load`, `ox.explainer(model, method)`, `explain` of a
random normal batch (fixed seed) for targets 0..7. The table gives the process's peak resident
set (VmHWM, the high-water mark ru_maxrss also reports) after `import onnxplain`, after loading
(the file's bytes and the weights are both resident for a moment; "(res.)" is what stays resident
after the load), after creating the explainer, after the first and after a second explanation
(what caches and the buffer pool add for a user who explains again), and what the explanation
took on top of the resident model ("+explain" = explain - res.). The models are exported once
in the parent (torch is imported there only), so the measured processes hold onnxplain and numpy
alone. ONNXPLAIN_POOL_MB (the buffer pool's cap, ir/tensor.cpp) passes through to them.

Beside it the script prints what the arithmetic needs: the weights' size, the input's, and the
sum of all intermediate float tensors of one forward pass at that batch (onnx shape inference on
the exported graph; a Conv output that feeds only a BatchNormalization is left out, since loading
folds the two into one node, as are Identity/Dropout outputs).

    python bench/memory.py                                  # every method, VGG-16 and ResNet-50
    python bench/memory.py --models vgg16 --methods lrp.alpha_2_beta_1 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ["lrp.epsilon_plus_flat", "lrp.alpha_2_beta_1", "lrp.epsilon_gamma_box", "gradient", "integrated_gradients"]
PARAMS: dict[str, dict[str, float]] = {"lrp.epsilon_gamma_box": {"low": -3.0, "high": 3.0}}
MB = 1 << 20


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


def child(path: str, method: str, batch: int, threads: int, steps: int) -> None:
    """One measurement; prints one JSON line."""
    import numpy as np

    import onnxplain as ox

    marks = {"import": _peak_mb()}
    model = ox.load(path, threads=threads)
    marks["load"] = _peak_mb()
    marks["rss_load"] = _status_kb("VmRSS") / 1024
    params = dict(PARAMS.get(method, {}))
    if method == "integrated_gradients":
        params["steps"] = steps
    ex = ox.explainer(model, method, **params)
    marks["explainer"] = _peak_mb()
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    target = np.arange(batch) % 1000
    r = ex.explain(x, target)
    marks["explain"] = _peak_mb()
    del r
    ex.explain(x, target)
    marks["explain2"] = _peak_mb()
    print(json.dumps(marks))


def sizes(data: bytes, batch: int) -> tuple[float, float, float]:
    """(weights, input, intermediate activations) in MiB at `batch`."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    m = onnx.load_from_string(data)
    weights = sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)
    inp = m.graph.input[0].type.tensor_type.shape
    inp.dim[0].ClearField("dim_param")
    inp.dim[0].dim_value = batch
    m = shape_inference.infer_shapes(m)
    info = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
    consumers: dict[str, list[str]] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    producer = {o: n.op_type for n in m.graph.node for o in n.output}
    acts = 0
    for name, v in info.items():
        t = v.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT or name in {i.name for i in m.graph.initializer}:
            continue
        if producer.get(name) == "Conv" and consumers.get(name) == ["BatchNormalization"]:
            continue  # folded at load: the BatchNormalization's output is the node's
        if producer.get(name) in ("Identity", "Dropout", "Constant"):
            continue
        acts += int(np.prod([d.dim_value for d in t.shape.dim])) * 4
    input_bytes = batch * 3 * 224 * 224 * 4
    return weights / MB, input_bytes / MB, acts / MB


def measure(path: str, method: str, batch: int, threads: int, steps: int = 32,
            env: dict[str, str] | None = None) -> dict[str, float]:
    """Peak RSS marks (MiB) of one explanation of the model file at `path`, in a fresh process."""
    cmd = [sys.executable, __file__, "--child", path, method, "--batch", str(batch), "--threads", str(threads),
           "--steps", str(steps)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env if env is not None else dict(os.environ))
    if p.returncode != 0:
        raise RuntimeError(str(p.stderr.strip().splitlines()[-1:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32, help="integrated gradients steps")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batch, args.threads, args.steps)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import archs

    head = (f"{'model':<9}{'method':<24}{'import':>7}{'load':>7}{'(res.)':>7}{'explainer':>10}{'explain':>8}"
            f"{'2nd':>7}{'+explain':>9}   (peak RSS, MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        print(f"batch {args.batch}, threads {args.threads}, 224x224, integrated_gradients steps {args.steps}, "
              f"ONNXPLAIN_POOL_MB={os.environ.get('ONNXPLAIN_POOL_MB', '(default)')}")
        for name in args.models:
            data = archs.build(name)
            path = os.path.join(tmp, f"{name}.onnx")
            Path(path).write_bytes(data)
            w, xin, acts = sizes(data, args.batch)
            print(f"\n{name}: weights {w:.0f} MiB, input {xin:.1f} MiB, intermediate activations at batch "
                  f"{args.batch} {acts:.0f} MiB (one forward pass, all values)")
            print(head)
            print("-" * len(head))
            for method in args.methods:
                try:
                    r = measure(path, method, args.batch, args.threads, args.steps, env)
                except RuntimeError as e:
                    print(f"{name:<9}{method:<24} failed: {e}")
                    continue
                print(f"{name:<9}{method:<24}{r['import']:>7.0f}{r['load']:>7.0f}{r['rss_load']:>7.0f}"
                      f"{r['explainer']:>10.0f}{r['explain']:>8.0f}{r['explain2']:>7.0f}"
                      f"{r['explain'] - r['rss_load']:>9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
