"""Cross-checks the ONNX files `trainer export` wrote during the cargo test run.

Reads EXPORT_DIR/cases.json (written by tests/export_e2e.rs): the exported models, the
preprocessed validation tensors they were evaluated on (raw little-endian float32, NCHW)
and tract's logits for each. For every model:
  * onnx.checker.check_model(full_check=True) passes;
  * onnxruntime's top-1 equals tract's on every image. fp32 must agree exactly. int8 may
    only differ where tract itself scores the two classes within INT8_TIE logits of each other
    (onnxruntime runs integer kernels with their own rounding; tract fake-quantizes in float);
  * the perch manifest is present in metadata_props, and records the `features` output
    (the pooled embedding, the graph's second output) with its width.
It also times onnxruntime (1 thread) on fp32 vs int8 files and prints the ratio (reported,
not asserted: timings belong in benchmarks). Exits 1 on any failure; the last line is
"N passed, N failed".
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

INT8_TIE = 0.05
MANIFEST_KEY = "perch.manifest"


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def latency_ms(sess, x, runs=20):
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x[:1]})
    t = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {name: x[:1]})
    return (time.perf_counter() - t) * 1000 / runs


def check_model(export_dir, case, inputs):
    path = export_dir / case["file"]
    failures = []
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - report any checker failure
        failures.append(f"onnx.checker: {e}")
    props = {p.key: p.value for p in model.metadata_props}
    if MANIFEST_KEY not in props:
        failures.append("no perch.manifest in metadata_props")
    else:
        manifest = json.loads(props[MANIFEST_KEY])
        if manifest["precision"]["kind"] != case["precision"]:
            failures.append(f"manifest precision {manifest['precision']['kind']} != {case['precision']}")
        # The pooled embedding (`edge-runtime enrol` builds on it) is the second output.
        features = manifest.get("features")
        outputs = [o.name for o in model.graph.output]
        if features is None:
            failures.append("manifest records no feature output")
        elif outputs[1:2] != [features["output"]]:
            failures.append(f"outputs {outputs}: expected the feature output {features['output']} second")
        else:
            dims = [d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim]
            if dims[-1] != features["dim"]:
                failures.append(f"feature output dims {dims} != manifest dim {features['dim']}")
    sess = session(path)
    name = sess.get_inputs()[0].name
    tract_logits = np.asarray(case["tract_logits"], dtype=np.float32)
    mismatches = 0
    for i in range(inputs.shape[0]):
        ort_logits = sess.run(None, {name: inputs[i : i + 1]})[0][0]
        ort_top, tract_top = int(np.argmax(ort_logits)), int(np.argmax(tract_logits[i]))
        if ort_top == tract_top:
            continue
        gap = float(tract_logits[i][tract_top] - tract_logits[i][ort_top])
        if case["precision"] == "fp32" or gap > INT8_TIE:
            mismatches += 1
            failures.append(f"image {i}: onnxruntime top-1 {ort_top}, tract {tract_top} (tract gap {gap:.4f})")
    if case["precision"] == "fp32":
        # Same float graph: the logits themselves must agree closely, not just the argmax.
        ort_all = np.concatenate([sess.run(None, {name: inputs[i : i + 1]})[0] for i in range(inputs.shape[0])])
        diff = float(np.max(np.abs(ort_all - tract_logits)))
        print(f"  {case['file']}: max |onnxruntime - tract| logit diff {diff:.2e}")
        if diff > 1e-3:
            failures.append(f"fp32 logits differ from tract by {diff}")
    print(f"  {case['file']}: {inputs.shape[0] - mismatches}/{inputs.shape[0]} top-1 agree with tract")
    return failures, sess


def main():
    export_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "target/perch-exports")
    cases_path = export_dir / "cases.json"
    if not cases_path.is_file():
        print(f"{cases_path} not found: run the cargo tests first (tests/export_e2e.rs writes it)")
        print("0 passed, 1 failed")
        return 1
    spec = json.loads(cases_path.read_text())
    inputs = np.fromfile(export_dir / spec["inputs"], dtype="<f4").reshape(spec["shape"])
    passed = failed = 0
    sessions = {}
    for case in spec["models"]:
        failures, sess = check_model(export_dir, case, inputs)
        sessions[case["precision"]] = sess
        if failures:
            failed += 1
            print(f"FAIL {case['file']}")
            for f in failures[:20]:
                print(f"    {f}")
        else:
            passed += 1
            print(f"ok   {case['file']}")
    if "fp32" in sessions and "int8" in sessions:
        fp32_ms = latency_ms(sessions["fp32"], inputs)
        int8_ms = latency_ms(sessions["int8"], inputs)
        print(f"onnxruntime 1 thread: fp32 {fp32_ms:.2f} ms, int8 {int8_ms:.2f} ms ({fp32_ms / int8_ms:.2f}x)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
