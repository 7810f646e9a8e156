"""The loop a user would write instead of perch: PIL decode + centre crop/resize + onnxruntime,
one thread (--threads), serial. Prints frames/s over a folder of images (the baseline of issue 12's
end-to-end comparison; scripts/bench-engines.sh runs it beside `edge-runtime run --source dir:`).

Usage: python ort_loop.py MODEL.onnx DIR [--mean 127.5 --std 127.5 --filter bilinear|bicubic]
"""
import argparse, glob, os, time
import numpy as np, onnxruntime as ort
from PIL import Image

a = argparse.ArgumentParser()
a.add_argument("model"); a.add_argument("dir")
a.add_argument("--mean", type=float, default=127.5); a.add_argument("--std", type=float, default=127.5)
a.add_argument("--filter", default="bilinear"); a.add_argument("--size", type=int, default=224)
a.add_argument("--passes", type=int, default=1); a.add_argument("--threads", type=int, default=1)
args = a.parse_args()
opts = ort.SessionOptions(); opts.intra_op_num_threads = args.threads; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
resample = Image.BILINEAR if args.filter == "bilinear" else Image.BICUBIC
files = sorted(glob.glob(os.path.join(args.dir, "*.jpg")))
n, t0 = 0, time.perf_counter()
for _ in range(args.passes):
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size; c = min(w, h) * 0.875
        img = img.resize((args.size, args.size), resample, box=((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2))
        x = ((np.asarray(img, np.float32) - args.mean) / args.std).transpose(2, 0, 1)[None]
        logits = sess.run(None, {name: x})[0]
        n += 1
dt = time.perf_counter() - t0
print(f"python onnxruntime {ort.__version__} + PIL, {args.threads} thread(s): {n} frames in {dt:.2f} s = {n / dt:.1f} frames/s")
