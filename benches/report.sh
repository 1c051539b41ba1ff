#!/usr/bin/env bash
# Report benchmark: what making the incident report costs over a plain replay of the same capture.
#
#   benches/report.sh            # ~5 M packets, median of 5 runs
#   benches/report.sh --runs 9   # more runs
#   benches/report.sh --quick    # ~1 M packets, 1 run: proves the script works (CI); asserts no speed
#   BENCH_DIR=/var/tmp/fw benches/report.sh   # keep the capture there and reuse it next time
#
# Measured in the same run, interleaved (a b c, a b c, …) so drift hits all alike, release build,
# default threads, on a synthetic capture of minimum-size frames (a SYN flood at 1 M packets/s over
# benign background, as benches/replay.sh):
#   (a) floodwatch replay -o /dev/null FILE
#   (b) floodwatch replay --record REC -o /dev/null FILE   (what the report draws, recorded)
#   (c) floodwatch report FILE -o report.html             (replay, record and render the page)
# The target (issue 12): (c) within 1.3× the wall time of (a). The last thing printed is a markdown
# table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

RUNS=5
quick_settings() { RUNS=1; }
parse_options 16 "$@"

if ((QUICK)); then
  min_size_syn_flood 3s 1s 1s
else
  # 5 s of attack at 1 M packets/s + 8 s of background: ~5.16 M frames.
  min_size_syn_flood 8s 1s 5s
fi

build_release
CAPTURE="$BENCH_DIR/report-$( ((QUICK)) && echo 1M || echo 5M).pcap"
synth_once "$CAPTURE" "${SYNTH[@]}"
cat "$CAPTURE" >/dev/null # warm the page cache
SIZE_MB="$(fixed 0 "$(stat -c %s "$CAPTURE") / 1e6")"

declare -A WALLS CPUS LABEL=(
  [a]="(a) replay"
  [b]="(b) replay --record"
  [c]="(c) report -o report.html"
)
NAMES=(a b c)
run_one() {
  local out="$BENCH_DIR/run-$1"
  case "$1" in
    a) timed "$out" "$FW" replay --seed 1 -o /dev/null "$CAPTURE" ;;
    b) timed "$out" "$FW" replay --seed 1 --record "$BENCH_DIR/rec.json" -o /dev/null "$CAPTURE" ;;
    c) timed "$out" "$FW" report --seed 1 "$CAPTURE" -o "$BENCH_DIR/report.html" ;;
  esac
}
interleaved_runs
FRAMES="$(sed -n 's/^ *frames \([0-9]*\) .*/\1/p' "$BENCH_DIR/run-a.err")"
[[ -n "$FRAMES" && "$FRAMES" -gt 0 ]] || die "replay read no frames ($BENCH_DIR/run-a.err)"
grep -q "report written" "$BENCH_DIR/run-c.err" || die "report wrote no page ($BENCH_DIR/run-c.err)"
PAGE_KB="$(fixed 0 "$(stat -c %s "$BENCH_DIR/report.html") / 1024")"

# shellcheck disable=SC2086 # word splitting of the space-separated lists is intended
{
  wa="$(median ${WALLS[a]})"
  printf '\n### Report cost\n\n'
  printf 'Machine: %s. Capture: `floodwatch synth %s` — %s frames, %s MB; the page: %s KB. ' \
    "$(machine_line)" "${SYNTH[*]}" "$FRAMES" "$SIZE_MB" "$PAGE_KB"
  printf 'Median of %s run(s).\n\n' "$RUNS"
  printf '| measurement | packets/s | wall s | CPU s (user+sys) | wall vs (a) |\n'
  printf '|---|---:|---:|---:|---:|\n'
  for n in "${NAMES[@]}"; do
    w="$(median ${WALLS[$n]})"
    c="$(median ${CPUS[$n]})"
    printf '| %s | %spps | %s | %s | %s× |\n' "${LABEL[$n]}" "$(si "$(calc "$FRAMES / $w")")" \
      "$w" "$c" "$(fixed 2 "$w / $wa")"
  done
}
