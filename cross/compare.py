#!/usr/bin/env python3
"""Compare two `edge-runtime classify --json` outputs (reference and cross-built binary).

    compare.py REFERENCE.json CANDIDATE.json [--top 5] [--tol 1e-4]

Each file holds one JSON object per image: {"path", "top": [{"index", "label", "score"}], ...}.
An image passes when its first TOP indices are identical and every score differs by at most TOL.
Prints one line per failure and a summary `cross: N passed, M failed`; exits 1 on any failure
or when the two runs did not classify the same images (a missing image is a failure, not a skip).
"""

import argparse
import json
import sys


def load(path):
    """All JSON objects in the file, keyed by image path (JSON lines or concatenated objects)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder, pos, found = json.JSONDecoder(), 0, {}
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return found
        obj, pos = decoder.raw_decode(text, pos)
        found[obj["path"]] = obj["top"]


def compare(ref_top, cand_top, top, tol):
    """(None, largest score difference) when the two predictions agree, else (why not, None)."""
    ref_top, cand_top = ref_top[:top], cand_top[:top]
    if len(ref_top) < top or len(cand_top) < top:
        return f"fewer than {top} classes ({len(ref_top)} vs {len(cand_top)})", None
    ref_idx = [t["index"] for t in ref_top]
    cand_idx = [t["index"] for t in cand_top]
    if ref_idx != cand_idx:
        return f"top-{top} indices differ: {ref_idx} vs {cand_idx}", None
    worst = max(abs(r["score"] - c["score"]) for r, c in zip(ref_top, cand_top))
    if worst > tol:
        return f"score differs by {worst:.3g} > {tol:g}", None
    return None, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("candidate")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    ref, cand = load(args.reference), load(args.candidate)
    passed = failed = 0
    max_diff = 0.0
    for path in sorted(set(ref) | set(cand)):
        if path not in ref or path not in cand:
            why, worst = f"only in {args.reference if path in ref else args.candidate}", None
        else:
            why, worst = compare(ref[path], cand[path], args.top, args.tol)
        if why is None:
            passed += 1
            max_diff = max(max_diff, worst)
        else:
            failed += 1
            print(f"FAIL {path}: {why}")
    if passed + failed == 0:
        print("cross: no images were classified", file=sys.stderr)
        failed = 1
    print(f"cross: {passed} passed, {failed} failed; max top-{args.top} score difference {max_diff:.2g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
