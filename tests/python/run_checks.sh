#!/usr/bin/env bash
# Cross-checks the models exported by the cargo tests (target/perch-exports/) with the ONNX
# checker and onnxruntime. Run after `cargo test` (tests/export_e2e.rs writes the exports;
# tests/enrol.rs writes an enrolled model to EXPORT_DIR/enrolled/).
# Usage: tests/python/run_checks.sh [EXPORT_DIR]   (PERCH_PY_VENV overrides the venv folder)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export_dir="${1:-$root/target/perch-exports}"
venv="${PERCH_PY_VENV:-$root/target/python-venv}"
bash "$root/tests/python/venv.sh" >/dev/null
status=0
"$venv/bin/python" "$root/tests/python/check_exports.py" "$export_dir" || status=1
# Models written by `edge-runtime enrol` (tests/enrol.rs), when the enrol tests ran.
if [ -f "$export_dir/enrolled/cases.json" ]; then
    "$venv/bin/python" "$root/tests/python/check_exports.py" "$export_dir/enrolled" || status=1
fi
exit $status
