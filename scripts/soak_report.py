#!/usr/bin/env python3
"""Summarises and plots a scripts/soak.sh CSV (elapsed_s,leg,rss_kib,frames,fps,error_lines
and, from newer runs, cpu_ms_per_frame,load1).

Per leg, over the samples after the warm-up: RSS against the first sample after the warm-up
(pass: every sample within +-5 %), fps min/mean and the mean of the last sixth against the
first sixth (no decay: at least 90 %; where the CSV has the run's CPU time per frame, decay is
judged on it instead, at most 110 % of the first sixth's, since fps also falls when other work
takes the cores), error lines (pass: none), and the run alive at every sample. Writes a
markdown summary and, with matplotlib, a PNG. Exits 1 when a leg fails.
"""
import argparse
import csv
import sys

RSS_TOLERANCE = 0.05  # issue 16: RSS after warm-up within +-5 %
FPS_KEEP = 0.90  # no decay: the last sixth keeps 90 % of the first sixth's mean fps
CPU_GROWTH = 1.10  # or, with CPU time per frame: the last sixth costs at most 110 % of the first


def load(path):
    legs = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            legs.setdefault(row["leg"], []).append(
                (
                    int(row["elapsed_s"]),
                    int(row["rss_kib"]),
                    int(row["frames"]),
                    float(row["fps"]),
                    int(row["error_lines"]),
                    float(row["cpu_ms_per_frame"]) if row.get("cpu_ms_per_frame") else None,
                    float(row["load1"]) if row.get("load1") else None,
                )
            )
    return legs


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def judge(samples, warmup_s):
    after = [s for s in samples if s[0] >= warmup_s] or samples
    rss = [s[1] for s in after]
    fps = [s[3] for s in after]
    base = rss[0]
    dev = max(abs(r - base) / base for r in rss) if base else float("inf")
    sixth = max(1, len(fps) // 6)
    first, last = mean(fps[:sixth]), mean(fps[-sixth:])
    errors = samples[-1][4]
    alive = all(s[1] > 0 for s in samples)
    cpu = [s[5] for s in after if s[5] is not None and s[5] > 0]
    cpu_first = mean(cpu[: max(1, len(cpu) // 6)]) if cpu else None
    cpu_last = mean(cpu[-max(1, len(cpu) // 6) :]) if cpu else None
    load = [s[6] for s in after if s[6] is not None]
    if cpu:
        no_decay = cpu_last <= CPU_GROWTH * cpu_first
    else:
        no_decay = first > 0 and last >= FPS_KEEP * first
    checks = {
        "rss": dev <= RSS_TOLERANCE,
        "no decay": no_decay,
        "errors": errors == 0,
        "alive": alive,
    }
    return {
        "samples": len(samples),
        "minutes": samples[-1][0] / 60,
        "rss_start_mib": base / 1024,
        "rss_end_mib": rss[-1] / 1024,
        "rss_change_pct": 100 * (rss[-1] - base) / base if base else float("nan"),
        "rss_max_dev_pct": 100 * dev,
        "rss_peak_mib": max(s[1] for s in samples) / 1024,
        "fps_min": min(fps),
        "fps_mean": mean(fps),
        "fps_first": first,
        "fps_last": last,
        "frames": samples[-1][2],
        "errors": errors,
        "cpu_first": cpu_first,
        "cpu_last": cpu_last,
        "load_first": mean(load[: max(1, len(load) // 6)]) if load else None,
        "load_last": mean(load[-max(1, len(load) // 6) :]) if load else None,
        "checks": checks,
        "pass": all(checks.values()),
    }


def markdown(results, warmup_s, summaries):
    lines = [
        f"Warm-up: {warmup_s / 60:.0f} min (excluded). Pass: RSS within ±{RSS_TOLERANCE * 100:.0f} % of the first "
        f"sample after the warm-up; no decay: the last sixth's mean fps ≥ {FPS_KEEP * 100:.0f} % of the first sixth's "
        f"(or, where CPU time per frame was sampled, the last sixth's ≤ {CPU_GROWTH * 100:.0f} % of the first sixth's); "
        "no error lines; the run alive throughout.",
        "",
        "| leg | minutes | samples | frames | RSS after warm-up → end (MiB) | change | max deviation | fps min / mean | fps first → last sixth | CPU ms/frame first → last sixth | load first → last sixth | error lines | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda a, b: f"{a:.1f} → {b:.1f}" if a is not None else "not sampled"
    for leg, r in results.items():
        failed = [k for k, ok in r["checks"].items() if not ok]
        lines.append(
            f"| {leg} | {r['minutes']:.1f} | {r['samples']} | {r['frames']} | {r['rss_start_mib']:.1f} → {r['rss_end_mib']:.1f} | "
            f"{r['rss_change_pct']:+.2f} % | {r['rss_max_dev_pct']:.2f} % | {r['fps_min']:.1f} / {r['fps_mean']:.1f} | "
            f"{r['fps_first']:.1f} → {r['fps_last']:.1f} | {fmt(r['cpu_first'], r['cpu_last'])} | "
            f"{fmt(r['load_first'], r['load_last'])} | {r['errors']} | "
            + ("pass" if r["pass"] else "FAIL (" + ", ".join(failed) + ")")
            + " |"
        )
    if summaries:
        lines += ["", "The runs' own summaries (stopped with SIGINT at the end):", "", "```", summaries.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def plot(legs, warmup_s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_fps) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for leg, samples in legs.items():
        t = [s[0] / 60 for s in samples]
        ax_rss.plot(t, [s[1] / 1024 for s in samples], label=leg)
        ax_fps.plot(t, [s[3] for s in samples], label=leg)
    for ax in (ax_rss, ax_fps):
        ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.set_ylim(0, 1.2 * max(s[1] / 1024 for samples in legs.values() for s in samples))
    ax_fps.set_ylabel("fps (10 s windows)")
    ax_fps.set_ylim(bottom=0)
    ax_fps.set_xlabel("minutes (dashed: end of warm-up)")
    fig.suptitle("edge-runtime run soak: RSS and fps")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--warmup-s", type=int, default=300)
    ap.add_argument("--markdown")
    ap.add_argument("--plot")
    ap.add_argument("--summaries")
    a = ap.parse_args()
    legs = load(a.csv)
    if not legs:
        sys.exit(f"{a.csv}: no samples")
    results = {leg: judge(s, a.warmup_s) for leg, s in legs.items()}
    summaries = open(a.summaries).read() if a.summaries else ""
    text = markdown(results, a.warmup_s, summaries)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)
    if a.plot:
        try:
            plot(legs, a.warmup_s, a.plot)
        except ImportError:
            print("no matplotlib: plot skipped", file=sys.stderr)
    sys.exit(0 if all(r["pass"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
