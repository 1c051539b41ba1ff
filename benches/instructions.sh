#!/usr/bin/env bash
# Instructions per packet, counted by valgrind's callgrind: repeatable on a noisy shared machine where
# wall time is not (and this VM exposes no hardware counters to `perf stat`). Same capture shape as
# benches/replay.sh, shortened to ~220 k frames so callgrind (≈ 50× slower) finishes in a minute;
# then (a) and (c) again on replay.sh's own 10 M frames (a few minutes), where fixed costs vanish.
#
#   benches/instructions.sh      # (a) replay --threads 1 and 2, (b) read+decode, (c) tcpdump; top functions of (a) at 1;
#                                # (d) replay --threads 1 of mixed web traffic (synth busy-site: what request floods' work costs)
#
# Instructions are not time — cache misses are invisible here (perf record shows them) — but a change
# that removes work shows up exactly. Needs valgrind (Debian package, installed if missing).
# The last thing printed is a markdown table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

parse_options 10 "$@" # no options but --help
ensure_debian_package valgrind valgrind || die "valgrind (Debian package valgrind) is needed"
build_release --example read_decode
min_size_syn_flood 1s 300ms 200ms
CAPTURE="$BENCH_DIR/instructions.pcap"
synth_once "$CAPTURE" "${SYNTH[@]}"
FRAMES="$("$ROOT/target/release/examples/read_decode" "$CAPTURE" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')"

# callgrind NAME CMD…: runs CMD under callgrind, sets IR to the total instruction count.
callgrind() {
  local name="$1"
  shift
  log "callgrind: $*"
  valgrind --tool=callgrind --callgrind-out-file="$BENCH_DIR/cg.$name" "$@" \
    >/dev/null 2>"$BENCH_DIR/cg.$name.log" || die "valgrind failed: $(tail -n 3 "$BENCH_DIR/cg.$name.log")"
  IR="$(sed -n 's/.*Collected : *//p' "$BENCH_DIR/cg.$name.log" | tr -d ',')"
}

# top_functions FILE N: the N functions with the most exclusive instructions, summed over inlined copies.
top_functions() {
  callgrind_annotate --auto=no "$1" 2>/dev/null |
    grep -E '^ *[0-9,]+ \([ 0-9.]+%\) +[^ ]' | grep -v 'PROGRAM TOTALS' |
    awk '{ line = $0; sub(/^ *[0-9,]+ \([ 0-9.]+%\) +/, "", line); sub(/ \[.*/, "", line)
           sub(/^[^:]*:/, "", line); x = $1; gsub(",", "", x); sum[line] += x }
         END { for (f in sum) printf "%d %s\n", sum[f], f }' |
    sort -rn | head -n "$2"
}

ROWS=()
callgrind a1 "$FW" replay --threads 1 --seed 1 -o /dev/null "$CAPTURE"
A1="$IR"
ROWS+=("| (a) floodwatch replay --threads 1 | $(fixed 0 "$IR / $FRAMES") |")
# two shards: the packets are routed (keys derived and hashed once, on the reader); the difference
# from --threads 1 is what routing and a second engine cost per packet
callgrind a2 "$FW" replay --threads 2 --seed 1 -o /dev/null "$CAPTURE"
ROWS+=("| (a) floodwatch replay --threads 2 | $(fixed 0 "$IR / $FRAMES") |")
callgrind b "$ROOT/target/release/examples/read_decode" "$CAPTURE"
ROWS+=("| (b) read+decode loop | $(fixed 0 "$IR / $FRAMES") |")
TCPDUMP=()
if ensure_debian_package tcpdump tcpdump; then
  # as root, tcpdump drops to its own user and callgrind could no longer write its output file
  TCPDUMP=(tcpdump)
  [[ "$(id -u)" == 0 ]] && TCPDUMP+=(-Z root)
  callgrind c "${TCPDUMP[@]}" -r "$CAPTURE" -w /dev/null
  ROWS+=("| (c) tcpdump -r FILE -w /dev/null | $(fixed 0 "$IR / $FRAMES") |")
fi

# the same flood at length: benches/replay.sh's 10 M-frame capture, where start-up (~5 M
# instructions), the last evaluation and the background's share (2 % of the frames, not 9 %) no
# longer weigh on each packet — what a packet costs once the run is under way, against tcpdump's
# on the same file (≈ 1.5 minutes each under callgrind; not with --quick)
LONG_ROWS=()
if ((!QUICK)); then
  SYNTH_SHORT=("${SYNTH[@]}")
  min_size_syn_flood 12s 1s 10s
  LONG_CAPTURE="$BENCH_DIR/replay-10M.pcap"
  synth_once "$LONG_CAPTURE" "${SYNTH[@]}"
  LONG_FRAMES="$("$ROOT/target/release/examples/read_decode" "$LONG_CAPTURE" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')"
  callgrind a1long "$FW" replay --threads 1 --seed 1 -o /dev/null "$LONG_CAPTURE"
  LONG_ROWS+=("| (a) floodwatch replay --threads 1, \`floodwatch synth ${SYNTH[*]}\` ($LONG_FRAMES frames) | $(fixed 0 "$IR / $LONG_FRAMES") |")
  if ((${#TCPDUMP[@]})); then
    callgrind clong "${TCPDUMP[@]}" -r "$LONG_CAPTURE" -w /dev/null
    LONG_ROWS+=("| (c) tcpdump -r FILE -w /dev/null, the same $LONG_FRAMES frames | $(fixed 0 "$IR / $LONG_FRAMES") |")
  fi
  SYNTH=("${SYNTH_SHORT[@]}")
fi

# mixed web traffic: whole HTTP/TLS sessions with real payloads, the request path's own work
WEB=(busy-site --seed 1)
WEB_CAPTURE="$BENCH_DIR/busy-site.pcap"
synth_once "$WEB_CAPTURE" "${WEB[@]}"
WEB_FRAMES="$("$ROOT/target/release/examples/read_decode" "$WEB_CAPTURE" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')"
callgrind d "$FW" replay --threads 1 --seed 1 -o /dev/null "$WEB_CAPTURE"
WEB_ROW="| (d) floodwatch replay --threads 1, \`floodwatch synth ${WEB[*]}\` ($WEB_FRAMES frames of web traffic) | $(fixed 0 "$IR / $WEB_FRAMES") |"

printf '\n### Instructions per packet (callgrind)\n\n'
printf 'Machine: %s. Capture: `floodwatch synth %s` — %s frames. Whole process, start-up included.\n\n' \
  "$(machine_line)" "${SYNTH[*]}" "$FRAMES"
printf '| measurement | instructions per packet |\n|---|---:|\n'
printf '%s\n' "${ROWS[@]}" ${LONG_ROWS[@]+"${LONG_ROWS[@]}"} "$WEB_ROW"
printf '\nTop functions of (a) by exclusive instructions (inlined code counts where it lands):\n\n'
printf '| function | instructions per packet | share of (a) |\n|---|---:|---:|\n'
while read -r n f; do
  printf '| `%s` | %s | %s %% |\n' "$f" "$(fixed 0 "$n / $FRAMES")" "$(fixed 1 "100 * $n / $A1")"
done < <(top_functions "$BENCH_DIR/cg.a1" 10)
