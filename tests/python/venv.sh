#!/usr/bin/env bash
# The Python venv of perch's checks (onnx, onnxruntime, numpy, pillow): creates it when missing,
# installs what is missing, and prints the path of the onnxruntime wheel's libonnxruntime.so,
# which the `--engine ort` tests and benchmarks load (ORT_DYLIB_PATH).
# Usage: tests/python/venv.sh   (PERCH_PY_VENV overrides the venv folder, default target/python-venv)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${PERCH_PY_VENV:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy, PIL" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy pillow >&2
fi
"$venv/bin/python" - <<'PY'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))
print(libs[-1] if libs else capi)
PY
