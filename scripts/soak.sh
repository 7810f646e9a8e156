#!/usr/bin/env bash
# Soak test of `edge-runtime run`: streams for MINUTES (default 60) and samples each run's RSS
# (VmRSS from /proc/PID/status) and fps (JSON records per interval) every 10 s into a CSV, then
# summarises and plots it (scripts/soak_report.py).
#
# Usage: scripts/soak.sh [MINUTES]
#
# Legs, run side by side (PERCH_SOAK_LEGS, default "synthetic dir"):
#   synthetic  run --source synthetic:30                  (a live source: stale frames dropped)
#   dir        run --source dir:tests/fixtures/photos --loop  (a finite source, started over)
# Each leg also publishes to an MQTT broker (--mqtt) when mosquitto is installed: the script
# starts one on a free 127.0.0.1 port (PERCH_SOAK_MQTT=0 turns this off).
# Each leg also serves its live page (--http 127.0.0.1:<free port>; PERCH_SOAK_HTTP=0 turns this
# off), and every sample fetches what an open page fetches (/api/status, /api/frame.jpg) plus a
# Prometheus scrape (/metrics), so the HTTP side is soaked too; a failed fetch is an error line.
#
# Pass (per leg, after the warm-up, PERCH_SOAK_WARMUP_MIN, default 5 or a sixth of the run):
# every RSS sample within ±5 % of the first one after the warm-up, the mean fps of the last
# sixth of the run at least 90 % of the first sixth's (on a machine shared with other work,
# judge the CPU time per frame column instead: it does not depend on the load), no error line
# on stderr, and the run still alive at the end (it is stopped with SIGINT and must print its
# summary).
#
# Environment: EDGE_RUNTIME (the binary; default target/release/edge-runtime, else
# target/debug), PERCH_WEIGHTS (default ../shared/weights), PERCH_SOAK_OUT (where the CSV,
# summary.md and soak.png go; default docs/soak), PERCH_SOAK_INTERVAL (seconds, default 10),
# PERCH_PY_VENV (a venv with matplotlib for the plot; created under the target folder if absent).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
minutes=${1:-60}
interval=${PERCH_SOAK_INTERVAL:-10}
legs=${PERCH_SOAK_LEGS:-synthetic dir}
out=${PERCH_SOAK_OUT:-docs/soak}
weights=${PERCH_WEIGHTS:-$root/../shared/weights}
target=${CARGO_TARGET_DIR:-$root/target}
bin=${EDGE_RUNTIME:-}
if [ -z "$bin" ]; then
  if [ -x "$target/release/edge-runtime" ]; then bin=$target/release/edge-runtime; else bin=$target/debug/edge-runtime; fi
fi
[ -x "$bin" ] || { echo "soak: no edge-runtime binary at $bin: cargo build --release -p edge-runtime (or set EDGE_RUNTIME)" >&2; exit 1; }
model=$weights/mobilenet_v2_1.0_224.onnx
[ -f "$model" ] || { echo "soak: $model not found: set PERCH_WEIGHTS to the shared weights folder" >&2; exit 1; }
warmup_min=${PERCH_SOAK_WARMUP_MIN:-$(( minutes / 6 < 5 ? (minutes / 6 > 0 ? minutes / 6 : 0) : 5 ))}
mkdir -p "$out"
work=$(mktemp -d /tmp/perch-soak.XXXXXX)
csv=$out/soak.csv
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mqtt_url=""
mosq=$(command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true)
if [ "${PERCH_SOAK_MQTT:-1}" = 1 ] && [ -n "$mosq" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  user=""; [ "$(id -u)" = 0 ] && user="user root"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n%s\n' "$port" "$user" >"$work/mosquitto.conf"
  "$mosq" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  pids+=($!)
  sleep 1
  mqtt_url="mqtt://127.0.0.1:$port/perch-soak"
fi

leg_args() {
  case "$1" in
    synthetic) echo "--source synthetic:30" ;;
    dir) echo "--source dir:$root/tests/fixtures/photos --loop" ;;
    *) echo "soak: unknown leg $1 (synthetic, dir)" >&2; exit 2 ;;
  esac
}

declare -A leg_pid http_port
for leg in $legs; do
  # shellcheck disable=SC2046
  args=(run $(leg_args "$leg") --model "$model" --preset mobilenetv2 --labels "$weights/imagenet_labels.txt" --emit jsonl --threads 1)
  [ -n "$mqtt_url" ] && args+=(--mqtt "$mqtt_url" --name "soak-$leg")
  if [ "${PERCH_SOAK_HTTP:-1}" = 1 ]; then
    http_port[$leg]=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    args+=(--http "127.0.0.1:${http_port[$leg]}")
  fi
  "$bin" "${args[@]}" >"$work/$leg.jsonl" 2>"$work/$leg.err" &
  leg_pid[$leg]=$!
  pids+=($!)
  echo "soak: leg $leg pid ${leg_pid[$leg]}: $bin ${args[*]}"
done

# Error lines: anything on stderr but the model line, the summary and the MQTT topic line;
# a warning or error of any kind (an MQTT reconnect included) counts.
errors() { grep -cvE '^(model |summary:|mqtt: publishing to |http: live page on )' "$1" || true; }

# CPU seconds (user + system) of a process, from /proc/PID/stat (fields 14 and 15, in ticks).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# cpu_ms_per_frame: the run's own CPU time per classified frame. fps depends on what else the
# machine runs; CPU per frame does not, so a leak or a slowdown inside perch shows there.
echo "elapsed_s,leg,rss_kib,frames,fps,error_lines,cpu_ms_per_frame,load1" >"$csv"
declare -A last_frames last_cpu
for leg in $legs; do last_frames[$leg]=0; last_cpu[$leg]=0; done
start=$(date +%s)
end=$(( start + minutes * 60 ))
last=$start
echo "soak: $minutes min, sampling every ${interval}s into $csv (warm-up $warmup_min min)"
gone=0
while [ "$(date +%s)" -lt "$end" ] && [ "$gone" = 0 ]; do
  sleep "$interval"
  now=$(date +%s)
  for leg in $legs; do
    pid=${leg_pid[$leg]}
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    # A leg that ended ends the soak (its stderr says why).
    [ -n "$rss" ] || { echo "soak: leg $leg (pid $pid) is gone" >&2; rss=0; gone=1; }
    frames=$(wc -l <"$work/$leg.jsonl")
    fps=$(awk -v a="$frames" -v b="${last_frames[$leg]}" -v dt=$(( now - last )) 'BEGIN { printf "%.2f", (a - b) / (dt > 0 ? dt : 1) }')
    cpu=$(cpu_s "$pid")
    cpf=$(awk -v c="$cpu" -v c0="${last_cpu[$leg]}" -v a="$frames" -v b="${last_frames[$leg]}" 'BEGIN { printf "%.1f", (a > b) ? 1000 * (c - c0) / (a - b) : 0 }')
    last_frames[$leg]=$frames
    last_cpu[$leg]=$cpu
    load1=$(cut -d' ' -f1 /proc/loadavg)
    if [ -n "${http_port[$leg]:-}" ]; then
      for path in /api/status /api/frame.jpg /metrics; do
        curl -sf -o /dev/null "http://127.0.0.1:${http_port[$leg]}$path" ||
          echo "soak: GET $path failed on leg $leg" >>"$work/$leg.err"
      done
    fi
    echo "$(( now - start )),$leg,$rss,$frames,$fps,$(errors "$work/$leg.err"),$cpf,$load1" >>"$csv"
  done
  last=$now
done

status=0
for leg in $legs; do
  pid=${leg_pid[$leg]}
  if kill -0 "$pid" 2>/dev/null; then
    # SIGINT = Ctrl-C: the run stops and prints its summary. (A background job of a script
    # ignores SIGINT until edge-runtime installs its handler, so a very short soak falls back
    # to SIGTERM after 20 s.)
    kill -INT "$pid"
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "soak: leg $leg did not stop on SIGINT within 20 s" >&2
      kill -TERM "$pid"
      status=1
    fi
    wait "$pid" || true
  else
    echo "soak: leg $leg died before the end" >&2
    status=1
  fi
  summary=$(grep '^summary:' "$work/$leg.err" || echo "no summary (the run did not end cleanly)")
  echo "$leg: $summary" | tee -a "$work/summaries.txt"
  grep -vE '^(model |summary:|mqtt: publishing to |http: live page on )' "$work/$leg.err" | head -n 20 | sed "s/^/$leg stderr: /" >>"$work/summaries.txt" || true
done
cp "$work/summaries.txt" "$out/summaries.txt"

venv=${PERCH_PY_VENV:-$target/python-venv-plot}
py=python3
if "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  py=$venv/bin/python
elif ! python3 -c "import matplotlib" 2>/dev/null; then
  echo "soak: installing matplotlib into $venv for the plot"
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check matplotlib && py=$venv/bin/python; } ||
    echo "soak: no matplotlib: the summary is written without the plot" >&2
fi
"$py" "$root/scripts/soak_report.py" "$csv" --warmup-s $(( warmup_min * 60 )) --summaries "$out/summaries.txt" \
  --markdown "$out/summary.md" --plot "$out/soak.png" || status=1
exit $status
