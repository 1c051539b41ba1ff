#!/usr/bin/env bash
# Detection latency benchmark: packet-time delay from a flood's first packet to its `start` event, for
# SYN floods at 1.25×, 2× and 10× the default SYN floor (1000 packets/s): 1250, 2000, 10000 packets/s
# over 200 packets/s of benign background. Packet time, not wall time: the numbers do not depend on the
# machine, only on the window, the tick and the trigger count.
#
#   benches/latency.sh           # 3 floods per rate (seeds 1-3, attack starting 0, 33 and 67 ms past a tick)
#   benches/latency.sh --quick   # 1 flood per rate
#   benches/latency.sh -- --window 500ms   # extra `floodwatch replay` options after --
#
# The flood's first packet comes from the synth labels (FILE.labels.jsonl, `first_packet_ns`), the start
# from the alert whose scope, key and class match the label (`ts`). Target: ≤ 300 ms at 2× (issue 13).
# The last thing printed is a markdown table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

FLOOR=1000
MULTIPLES=(1.25 2 10)
STARTS=(10000ms 10033ms 10067ms)
REPLAY_ARGS=()
quick_settings() { STARTS=(10033ms); }
bench_option() { [[ "$1" == -- ]] && REPLAY_ARGS=("${@:2}") TAKEN=$#; }
parse_options 13 "$@"
build_release

# json_field NAME LINE: the value of a top-level string or number field of a flat JSON line.
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",]*\)\"\{0,1\}[,}].*/\1/p" <<<"$2" | head -n 1; }

ROWS=()
for m in "${MULTIPLES[@]}"; do
  pps="$(fixed 0 "$m * $FLOOR")"
  delays=()
  for i in "${!STARTS[@]}"; do
    seed=$((i + 1))
    capture="$BENCH_DIR/latency-$pps-$seed.pcap"
    synth_once "$capture" syn-flood --seed "$seed" --attack-pps "$pps" --background-pps 200 \
      --duration 20s --attack-start "${STARTS[$i]}" --attack-duration 5s
    label="$(head -n 1 "$capture.labels.jsonl")"
    first_ns="$(json_field first_packet_ns "$label")"
    scope="$(json_field scope "$label")" key="$(json_field key "$label")"
    class="$(json_field class "$label")"
    "$FW" replay --quiet --seed 1 "${REPLAY_ARGS[@]}" "$capture" >"$BENCH_DIR/latency.jsonl" ||
      die "replay of $capture failed"
    start="$(grep '"event":"start"' "$BENCH_DIR/latency.jsonl" |
      grep -F "\"scope\":\"$scope\",\"key\":\"$key\",\"class\":\"$class\"" | head -n 1 || true)"
    if [[ -z "$start" ]]; then
      log "$pps pps, seed $seed: no start event for $scope $key $class"
      delays+=(missed)
      continue
    fi
    start_ns="$(date -u -d "$(json_field ts "$start")" +%s%N)"
    delay_ms="$(fixed 0 "($start_ns - $first_ns) / 1e6")"
    log "$pps pps (${m}x), seed $seed, attack at ${STARTS[$i]}: start after $delay_ms ms"
    delays+=("$delay_ms")
  done
  numeric=()
  for d in "${delays[@]}"; do [[ "$d" == missed ]] || numeric+=("$d"); done
  if ((${#numeric[@]})); then
    med="$(median "${numeric[@]}")"
    max="$(printf '%s\n' "${numeric[@]}" | sort -g | tail -n 1)"
  else
    med=- max=-
  fi
  missed=$((${#delays[@]} - ${#numeric[@]}))
  ROWS+=("| ${m}× | $pps | $med | $max | ${delays[*]} | $missed |")
done

printf '\n### Detection latency\n\n'
printf 'Packet time from the first flood packet to the `start` event of its `dst_host` syn_flood alert;'
printf ' `floodwatch replay%s` (defaults: 1 s window, 100 ms tick, 2 confirming evaluations, SYN floor %s pps).' \
  "${REPLAY_ARGS[*]:+ ${REPLAY_ARGS[*]}}" "$FLOOR"
printf ' Captures: `floodwatch synth syn-flood --attack-pps R --background-pps 200 --duration 20s --attack-start S --attack-duration 5s`.\n\n'
printf '| flood / threshold | attack pps | median ms | max ms | each run ms (attack start %s) | missed |\n' "${STARTS[*]}"
printf '|---:|---:|---:|---:|---|---:|\n'
printf '%s\n' "${ROWS[@]}"
