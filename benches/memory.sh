#!/usr/bin/env bash
# Memory benchmark: peak RSS of `floodwatch replay` on SYN floods from 1 M, 5 M and 10 M distinct
# spoofed sources (`floodwatch synth spoofed-sources --sources N`). The key tables are capped by
# configuration, so the peak should stay flat whatever N is (target: ≤ 128 MiB).
#
#   benches/memory.sh            # N = 1 M, 5 M, 10 M, --threads 2
#   benches/memory.sh --quick    # N = 1 M only (CI: proves the script works; never asserts a size)
#   BENCH_DIR=/var/tmp/fw benches/memory.sh   # keep the captures there and reuse them
#
# Each capture carries N × 2 attack packets (1 M packets/s for 2 N / 1 M seconds) so every source
# appears about twice, over 1 s of benign background before and after. Peak RSS is GNU time's
# "Maximum resident set size" (/usr/bin/time -v, Debian package `time`, installed if missing).
# The last thing printed is a markdown table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

SOURCES=(1000000 5000000 10000000)
THREADS=2
quick_settings() { SOURCES=(1000000); }
bench_option() { [[ "$1" == --threads ]] && THREADS="${2:?--threads needs a number}" TAKEN=2; }
parse_options 13 "$@"

ensure_debian_package /usr/bin/time time || die "/usr/bin/time (Debian package time) is needed"
build_release

ROWS=()
for n in "${SOURCES[@]}"; do
  attack_pps=1000000
  attack_s="$(calc "2 * $n / $attack_pps")"
  capture="$BENCH_DIR/spoofed-$((n / 1000000))M.pcap"
  synth_once "$capture" spoofed-sources --min-size --seed 1 --sources "$n" \
    --attack-pps "$attack_pps" --attack-start 1s --attack-duration "${attack_s}s" \
    --duration "$(calc "$attack_s + 2")s" --background-pps 2000
  log "replaying $capture (--threads $THREADS)"
  /usr/bin/time -v "$FW" replay --threads "$THREADS" --seed 1 -o "$BENCH_DIR/alerts.jsonl" \
    "$capture" 2>"$BENCH_DIR/memory.err" || die "replay failed: $(tail -n 5 "$BENCH_DIR/memory.err")"
  rss_kb="$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$BENCH_DIR/memory.err")"
  [[ -n "$rss_kb" ]] || die "no 'Maximum resident set size' in /usr/bin/time -v output"
  frames="$(sed -n 's/^ *frames \([0-9]*\) .*/\1/p' "$BENCH_DIR/memory.err")"
  keys="$(sed -n 's/^ *peak keys: //p' "$BENCH_DIR/memory.err")"
  over="$(grep -o 'src_host [0-9]* ([0-9]* packets over the key cap)' "$BENCH_DIR/memory.err" || true)"
  alerts="$(grep -c '"event":"start"' "$BENCH_DIR/alerts.jsonl" || true)"
  log "N=$n: peak RSS $rss_kb kB, $frames frames, peak keys: $keys ${over:+($over)}"
  ROWS+=("| $(si "$n") | $(si "$frames") | $(fixed 1 "$rss_kb / 1024") | $keys | $alerts |")
done

printf '\n### Peak memory with spoofed sources\n\n'
printf 'Machine: %s. `floodwatch replay --threads %s` on `floodwatch synth spoofed-sources --min-size --sources N`' \
  "$(machine_line)" "$THREADS"
printf ' (1 M attack packets/s for 2N/1M s, 2 k background packets/s). Peak RSS from `/usr/bin/time -v`.\n\n'
printf '| distinct sources N | frames | peak RSS MiB | peak keys per scope (summed over shards) | start events |\n'
printf '|---:|---:|---:|---|---:|\n'
printf '%s\n' "${ROWS[@]}"
