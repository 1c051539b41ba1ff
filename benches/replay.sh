#!/usr/bin/env bash
# Replay benchmark: how fast `floodwatch replay` runs with full detection, side by side with a bare
# read+decode loop over the same file and with tcpdump, on one synthetic capture of minimum-size frames
# (a spoofed SYN flood at 1 M packets/s over benign background).
#
#   benches/replay.sh            # ≥ 10 M packets, median of 5 runs
#   benches/replay.sh --runs 9   # more runs
#   benches/replay.sh --quick    # 1 M packets, 1 run: proves the script works (CI); never asserts a speed
#   benches/replay.sh --evidence # only (a) --threads 1 with and without --evidence-dir (issue 12)
#   BENCH_DIR=/var/tmp/fw benches/replay.sh   # keep the capture there and reuse it next time
#
# Measured, in the same run and interleaved (a1 a2 b c, a1 a2 b c, …) so drift hits all alike:
#   (a) floodwatch replay --threads 1, 2, … up to the core count (at least 2) (release build, full
#       detection, alerts to /dev/null); packets per CPU-second per thread count shows whether a
#       thread count duplicates work (the scaling column: per CPU-second relative to --threads 1)
#   (d) the same with --decode-threads 1 at --threads 1 and 2: a reading thread only copies frames
#       out, one decode thread decodes (the decode pool; the output is the same)
#   (b) examples/read_decode.rs: the same FileSource reader and Decoder, nothing else
#   (c) tcpdump -r FILE -w /dev/null (Debian package tcpdump), an outside reference
# With --evidence, instead: (a) --threads 1 and (e) the same with --evidence-dir (a fresh directory
# each run; default --evidence-before/--evidence-after), interleaved, and the ratio e / a — what
# writing the attack samples costs (target: at most 5 %).
# packets/s = frames in the file / wall time of the whole command (process start to exit), the median
# over the runs. CPU seconds (user+sys) are shown too: on a shared machine they move less than wall time.
# The last thing printed is a markdown table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

RUNS=5
EVIDENCE=0
quick_settings() { RUNS=1; }
bench_option() { [[ "$1" == --evidence ]] && EVIDENCE=1; }
parse_options 24 "$@"

if ((QUICK)); then
  # 1 s of attack at 1 M packets/s + 3 s of background: ~1.06 M frames.
  min_size_syn_flood 3s 1s 1s
else
  # 10 s of attack at 1 M packets/s + 12 s of background: ~10.24 M frames (~780 MB).
  min_size_syn_flood 12s 1s 10s
fi

build_release --example read_decode
READ_DECODE="$ROOT/target/release/examples/read_decode"
CAPTURE="$BENCH_DIR/replay-$( ((QUICK)) && echo 1M || echo 10M).pcap"
synth_once "$CAPTURE" "${SYNTH[@]}"

HAVE_TCPDUMP=1
if ((EVIDENCE)); then
  HAVE_TCPDUMP=0
elif ! ensure_debian_package tcpdump tcpdump; then
  HAVE_TCPDUMP=0
  log "note: tcpdump is missing and could not be installed: column (c) is skipped"
fi

# Frame count, from the bare loop (and checked against floodwatch's own summary below).
cat "$CAPTURE" >/dev/null # warm the page cache: every column reads from memory
FRAMES="$("$READ_DECODE" "$CAPTURE" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')"
[[ -n "$FRAMES" && "$FRAMES" -gt 0 ]] || die "read_decode read no frames from $CAPTURE"
SIZE_MB="$(fixed 0 "$(stat -c %s "$CAPTURE") / 1e6")"
log "capture: $CAPTURE, $FRAMES frames, $SIZE_MB MB; $RUNS run(s)"

declare -A WALLS CPUS
CORES="$(nproc)"
MAX_THREADS=$((CORES > 2 ? CORES : 2))
NAMES=()
declare -A LABEL=(
  [b]="(b) read+decode loop (examples/read_decode)"
  [c]="(c) tcpdump -r FILE -w /dev/null"
)
if ((EVIDENCE)); then
  MAX_THREADS=1
fi
for ((t = 1; t <= MAX_THREADS; t++)); do
  NAMES+=("a$t")
  LABEL[a$t]="(a) floodwatch replay --threads $t --decode-threads 0"
done
if ((EVIDENCE)); then
  NAMES+=(e1)
  LABEL[e1]="(e) floodwatch replay --threads 1 --decode-threads 0 --evidence-dir DIR"
else
  # (d): the same with a decode pool of one thread (a reading thread only copies frames out)
  for ((t = 1; t <= 2; t++)); do
    NAMES+=("d$t")
    LABEL[d$t]="(d) floodwatch replay --threads $t --decode-threads 1"
  done
  NAMES+=(b)
  ((HAVE_TCPDUMP)) && NAMES+=(c)
fi
run_one() {
  local out="$BENCH_DIR/run-$1"
  case "$1" in
    a*) timed "$out" "$FW" replay --threads "${1#a}" --decode-threads 0 --seed 1 -o /dev/null "$CAPTURE" ;;
    d*) timed "$out" "$FW" replay --threads "${1#d}" --decode-threads 1 --seed 1 -o /dev/null "$CAPTURE" ;;
    e*)
      rm -rf "$BENCH_DIR/evidence"
      timed "$out" "$FW" replay --threads "${1#e}" --decode-threads 0 --seed 1 -o /dev/null \
        --evidence-dir "$BENCH_DIR/evidence" "$CAPTURE"
      ;;
    b) timed "$out" "$READ_DECODE" "$CAPTURE" ;;
    c) timed "$out" tcpdump -r "$CAPTURE" -w /dev/null ;;
  esac
  if [[ "$1" == [ade]* ]]; then
    local seen
    seen="$(sed -n 's/^ *frames \([0-9]*\) .*/\1/p' "$out.err")"
    [[ "$seen" == "$FRAMES" ]] || die "replay saw ${seen:-no} frames, expected $FRAMES ($out.err)"
  fi
}
interleaved_runs

declare -A PPS
ROW=()
# shellcheck disable=SC2086 # word splitting of the space-separated lists is intended
for n in "${NAMES[@]}"; do
  wall="$(median ${WALLS[$n]})"
  cpu="$(median ${CPUS[$n]})"
  PPS[$n]="$(calc "$FRAMES / $wall")"
  ROW[${#ROW[@]}]="| ${LABEL[$n]} | $(si "${PPS[$n]}")pps | $wall | $cpu | $(fixed 2 "$FRAMES / $cpu / 1e6") |"
done

ratio() { if [[ -n "${PPS[$2]:-}" ]]; then printf '%.0f %%' "$(calc "100 * ${PPS[$1]} / ${PPS[$2]}")"; else printf 'n/a'; fi; }

if ((EVIDENCE)); then
  printf '\n### Replay with --evidence-dir\n\n'
  printf 'Machine: %s. Capture: `floodwatch synth %s` — %s frames of 60 bytes, %s MB. ' \
    "$(machine_line)" "${SYNTH[*]}" "$FRAMES" "$SIZE_MB"
  printf 'Median of %s interleaved run(s); packets/s = frames / wall time of the whole command.\n\n' "$RUNS"
  printf '| measurement | packets/s | wall s | CPU s (user+sys) | M packets per CPU-second |\n'
  printf '|---|---:|---:|---:|---:|\n'
  printf '%s\n' "${ROW[@]}"
  # shellcheck disable=SC2086
  cpu_a="$(median ${CPUS[a1]})"
  # shellcheck disable=SC2086
  cpu_e="$(median ${CPUS[e1]})"
  printf '\n| with --evidence-dir / without | packets/s | CPU seconds |\n|---|---:|---:|\n'
  printf '| e / a | %s | %s |\n' "$(ratio e1 a1)" "$(printf '%.0f %%' "$(calc "100 * $cpu_e / $cpu_a")")"
  files="$(find "$BENCH_DIR/evidence" -name '*.pcap' 2>/dev/null | wc -l)"
  printf '\nThe last (e) run wrote %s file(s): %s\n' "$files" \
    "$(grep -h '^  evidence' "$BENCH_DIR/run-e1.err" | sed 's/^ *//' | paste -sd ';' -)"
  exit 0
fi

printf '\n### Replay throughput\n\n'
printf 'Machine: %s. Capture: `floodwatch synth %s` — %s frames of 60 bytes, %s MB. ' \
  "$(machine_line)" "${SYNTH[*]}" "$FRAMES" "$SIZE_MB"
printf 'Median of %s run(s); packets/s = frames / wall time of the whole command.\n\n' "$RUNS"
printf '| measurement | packets/s | wall s | CPU s (user+sys) | M packets per CPU-second |\n'
printf '|---|---:|---:|---:|---:|\n'
printf '%s\n' "${ROW[@]}"
ANAMES=()
for n in "${NAMES[@]}"; do [[ "$n" == a* ]] && ANAMES+=("$n"); done
header='| ratio |'
rule='|---|'
for n in "${ANAMES[@]}"; do header+=" --threads ${n#a} |"; rule+='---:|'; done
printf '\n%s\n%s\n' "$header" "$rule"
line_b='| a / b (replay vs read+decode) |'
line_c='| a / c (replay vs tcpdump) |'
line_s='| packets per CPU-second vs --threads 1 (≥ 85 %: no duplicated work) |'
# shellcheck disable=SC2086 # word splitting of the space-separated lists is intended
cpu1="$(median ${CPUS[a1]})"
for n in "${ANAMES[@]}"; do
  line_b+=" $(ratio "$n" b) |"
  line_c+=" $(ratio "$n" c) |"
  # shellcheck disable=SC2086
  line_s+=" $(printf '%.0f %%' "$(calc "100 * $cpu1 / $(median ${CPUS[$n]})")") |"
done
printf '%s\n%s\n%s\n' "$line_b" "$line_c" "$line_s"
((HAVE_TCPDUMP)) || printf '\n(c) skipped: tcpdump is not installed and apt-get could not install it.\n'
