"""onnxruntime's own latency on a model file: Python, 1 intra-op thread, the same warm-up and
iteration counts as `edge-runtime bench`. Prints one JSON line per model (p50/p90/mean ms), the
reference for the overhead of perch's `--engine ort` wrapper (scripts/bench-engines.sh).

Usage: python ort_latency.py [--warmup 20] [--iterations 200] MODEL.onnx...
"""
import argparse, json, time
import numpy as np, onnxruntime as ort

a = argparse.ArgumentParser()
a.add_argument("models", nargs="+")
a.add_argument("--warmup", type=int, default=20); a.add_argument("--iterations", type=int, default=200)
a.add_argument("--threads", type=int, default=1)
args = a.parse_args()
for path in args.models:
    opts = ort.SessionOptions(); opts.intra_op_num_threads = args.threads; opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    for _ in range(args.warmup):
        sess.run(None, {inp.name: x})
    t = []
    for _ in range(args.iterations):
        s = time.perf_counter(); sess.run(None, {inp.name: x}); t.append((time.perf_counter() - s) * 1000)
    t = np.array(t)
    print(json.dumps({"model": path.rsplit("/", 1)[-1], "onnxruntime": ort.__version__, "threads": args.threads,
                      "p50_ms": round(float(np.percentile(t, 50)), 3), "p90_ms": round(float(np.percentile(t, 90)), 3),
                      "mean_ms": round(float(t.mean()), 3)}))
