#!/usr/bin/env bash
# Live capture benchmark: CPU per packet and kernel drops of `floodwatch live` with one and with two
# capture threads (AF_PACKET fanout), on a veth pair between two network namespaces this script
# makes (and deletes), flooded by tcpreplay at its top speed. Root, `ip` and `tcpreplay` needed.
#
#   benches/live.sh               # 300 k SYNs per run, 3 runs per setting
#   benches/live.sh --packets N   # N packets per run
#   benches/live.sh --quick       # 50 k packets, 1 run: proves the script works
#
# Traffic goes only to the receiving namespace's own address (10.250.0.2) over the veth pair. CPU
# is floodwatch's user+sys time as its summary reports it (getrusage, to the microsecond), from
# start to Ctrl-C, per packet read; an idle run (no traffic) is measured too and shown beside it
# (start-up and idle ticks: what a short run adds). Beside them: the run time of all floodwatch's
# threads from once it says "capturing on" (its rings allocated) to Ctrl-C, per packet — the
# traffic, tcpreplay's start and the last second's idle ticks — and, for the last run of each
# setting, the run time of each thread by its name (/proc/PID/task/*/schedstat).
# The last thing printed is a markdown table ready to paste into docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

PACKETS=300000
RUNS=3
quick_settings() { PACKETS=50000 RUNS=1; }
bench_option() { [[ "$1" == --packets ]] && PACKETS="${2:?--packets needs a number}" TAKEN=2; }
parse_options 13 "$@"
[[ "$(id -u)" == 0 ]] || die "needs root (network namespaces and AF_PACKET)"
compgen -G "/proc/self/task/*/schedstat" >/dev/null ||
  die "needs /proc/PID/task/TID/schedstat (a kernel with CONFIG_SCHED_INFO)"
command -v ip >/dev/null || die "needs ip (Debian package iproute2)"
ensure_debian_package tcpreplay tcpreplay || die "needs tcpreplay (Debian package tcpreplay)"
build_release

TAG="fwb$$"
SNS="${TAG}s" RNS="${TAG}r" SIF="${TAG}s" RIF="${TAG}r"
FW_PID=""
cleanup() {
  # a run cut short leaves no floodwatch behind
  [[ -z "$FW_PID" ]] || kill "$FW_PID" 2>/dev/null || true
  ip netns del "$SNS" 2>/dev/null || true
  ip netns del "$RNS" 2>/dev/null || true
}
trap 'cleanup; [[ -n "${KEEP_BENCH_DIR:-}" ]] || rm -rf "$BENCH_DIR"' EXIT
ip netns add "$SNS"
ip netns add "$RNS"
for ns in "$SNS" "$RNS"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$SIF" netns "$SNS" type veth peer name "$RIF" netns "$RNS"
ip -n "$SNS" addr add 10.250.0.1/24 dev "$SIF"
ip -n "$RNS" addr add 10.250.0.2/24 dev "$RIF"
ip -n "$SNS" link set "$SIF" up
ip -n "$RNS" link set "$RIF" up
MAC="$(ip netns exec "$RNS" cat "/sys/class/net/$RIF/address")"

CAPTURE="$BENCH_DIR/live-$PACKETS.pcap"
"$FW" synth syn-flood --victim 10.250.0.2 --dst-mac "$MAC" --src-mac 02:00:00:00:00:01 \
  --duration 1s --attack-start 0s --attack-duration 1s --attack-pps "$PACKETS" \
  --background-pps 0 -o "$CAPTURE" >/dev/null 2>"$BENCH_DIR/synth.log" ||
  die "synth failed: $(cat "$BENCH_DIR/synth.log")"

# task_ns PID: the run time of all PID's threads so far, in ns (/proc/PID/task/*/schedstat; 0 once
# PID is gone).
task_ns() {
  { cat /proc/"$1"/task/*/schedstat 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# run THREADS SPREAD SEND: floodwatch live on the receiver for a fixed time, flooded when SEND is 1;
# sets CPU (s), FRAMES, KDROPS, TRAFFIC_NS (task_ns from "capturing on" to Ctrl-C) and BY_THREAD.
run() {
  local threads="$1" spread="$2" send="$3" err="$BENCH_DIR/live.err"
  rm -f "$err"
  # `ip netns exec` becomes floodwatch (it execs): $! is floodwatch's pid
  ip netns exec "$RNS" "$FW" live "$RIF" --threads 1 --capture-threads "$threads" \
    --capture-spread "$spread" --status-interval 0 -o /dev/null 2>"$err" &
  local pid=$!
  FW_PID=$pid
  for _ in $(seq 100); do
    grep -q "capturing on" "$err" 2>/dev/null && break
    sleep 0.05
  done
  grep -q "capturing on" "$err" || die "floodwatch did not start: $(cat "$err")"
  local started
  started="$(task_ns "$pid")"
  if ((send)); then
    ip netns exec "$SNS" tcpreplay -q -i "$SIF" --topspeed "$CAPTURE" >"$BENCH_DIR/tcpreplay.log" 2>&1 ||
      die "tcpreplay failed: $(cat "$BENCH_DIR/tcpreplay.log")"
  else
    sleep 0.5
  fi
  sleep 1
  # each thread's run time so far, to the nanosecond (/proc/PID/task/TID/schedstat), by its name
  # (the main thread keeps the program's: it reads the first socket and routes)
  BY_THREAD=""
  local t
  for t in /proc/"$pid"/task/*; do
    BY_THREAD+="$(cat "$t/comm" 2>/dev/null || true) $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || true)"$'\n'
  done
  BY_THREAD="$(awk 'NF == 2 && $2 > 1e6 { sub(/-[0-9]+$/, "-N", $1); s[$1] += $2; n[$1]++ }
    END { for (k in s) printf "%.3f %s%s\n", s[k] / 1e9, k, (n[k] > 1 ? " ×" n[k] : "") }' <<<"$BY_THREAD" |
    sort -rn | awk '{ t = $1; $1 = ""; printf "%s%s %s s", (NR > 1 ? ", " : ""), substr($0, 2), t }')"
  # run time from "capturing on" to Ctrl-C: the rings' pages zeroed by the kernel at start (~10 ms
  # for 64 MiB, once per socket) and the exit's last evaluation left out
  TRAFFIC_NS=$(($(task_ns "$pid") - started))
  kill -INT "$pid" || true
  wait "$pid" || true
  FW_PID=""
  # floodwatch's own user+system time (getrusage, to the microsecond) from its summary
  CPU="$(sed -n 's/^ *CPU \([0-9.]*\) s.*/\1/p' "$err" | head -n 1)"
  [[ -n "$CPU" ]] || die "no CPU line in floodwatch's summary: $(tail -n 5 "$err")"
  FRAMES="$(sed -n 's/.*frames \([0-9]*\).*/\1/p' "$err" | head -n 1)"
  KDROPS="$(sed -n 's/.*kernel drops \([0-9]*\).*/\1/p' "$err" | head -n 1)"
  FRAMES="${FRAMES:-0}" KDROPS="${KDROPS:-0}"
  # whether the first capture thread fell behind and packets spread (when-behind)
  SPREAD="$(grep -o 'fell behind [0-9]* times*' "$err" || true)"
}

ROWS=() THREAD_ROWS=()
# one capture thread; two, the second used only when the first falls behind (the default); two
# spreading by flow all the time. Each round runs every setting in turn (a b c, a b c, …), so the
# VM's drift over the minutes hits all alike.
SETTINGS=("1 when-behind" "2 when-behind" "2 always")
declare -A IDLE CPUS FRAMES_OF DROPS TRAFFIC LAST_BY_THREAD
for r in $(seq "$RUNS"); do
  for n in "${!SETTINGS[@]}"; do
    setting="${SETTINGS[$n]}"
    threads="${setting% *}" spread="${setting#* }"
    run "$threads" "$spread" 0
    IDLE[$n]+="$CPU "
    run "$threads" "$spread" 1
    CPUS[$n]+="$CPU " FRAMES_OF[$n]+="$FRAMES " DROPS[$n]+="$KDROPS " TRAFFIC[$n]+="$TRAFFIC_NS "
    LAST_BY_THREAD[$n]="$BY_THREAD"
    log "capture threads $setting, run $r: $FRAMES frames, $KDROPS kernel drops, ${CPU} s CPU ($BY_THREAD)${SPREAD:+, $SPREAD}"
  done
done
for n in "${!SETTINGS[@]}"; do
  setting="${SETTINGS[$n]}"
  label="${setting% *}"
  ((label == 1)) || label="${setting/ /, }"
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  cpu="$(median ${CPUS[$n]})" base="$(median ${IDLE[$n]})" got="$(median ${FRAMES_OF[$n]})"
  # shellcheck disable=SC2086
  drops="$(median ${DROPS[$n]})" traffic="$(median ${TRAFFIC[$n]})"
  per="$(fixed 0 "$cpu * 1e9 / ($got > 0 ? $got : 1)")"
  during="$(fixed 0 "$traffic / ($got > 0 ? $got : 1)")"
  ROWS+=("| $label | $PACKETS | $got | $drops | $cpu | $base | $per | $during |")
  THREAD_ROWS+=("| $label | ${LAST_BY_THREAD[$n]} |")
done
RATE="$(sed -n 's/.*Rated: *\([0-9.]*\) Bps, *[0-9.]* Mbps, *\([0-9.]*\) pps.*/\2/p' "$BENCH_DIR/tcpreplay.log" | head -n 1)"

printf '\n### Live capture on a veth pair\n\n'
printf 'Machine: %s. `floodwatch live IF --threads 1 --capture-threads N --capture-spread WHEN`, a SYN flood of %s packets sent by `tcpreplay --topspeed` (last run: %s packets/s); median of %s run(s), the settings taking turns; CPU from start to Ctrl-C, per packet read.\n\n' \
  "$(machine_line)" "$PACKETS" "${RATE:-?}" "$RUNS"
printf '| capture threads, spread | sent | read | kernel drops | CPU s | CPU s of an idle run | ns of CPU per packet read | ns per packet, "capturing on" to Ctrl-C (schedstat) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '%s\n' "${ROWS[@]}"
printf '\nRun time by thread in the last run with traffic (`/proc/PID/task/*/schedstat` just before Ctrl-C; threads under 1 ms left out; `floodwatch` is the main thread, which reads the first socket and routes):\n\n'
printf '| capture threads, spread | run time by thread |\n|---:|---|\n'
printf '%s\n' "${THREAD_ROWS[@]}"
