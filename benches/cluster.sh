#!/usr/bin/env bash
# The bus path against one machine (issue 15): a capture replayed by one `floodwatch replay` (the
# in-process pipeline) and by an ingest node (`replay --publish`) → nats-server (JetStream, file
# storage, on loopback) → a detector node (`detect --partitions 0-7`), in the same run, interleaved;
# the bus twice: summaries (the default) and per-tick aggregates (`--edge-admission`).
#
#   benches/cluster.sh            # 3 interleaved runs of 2 M minimum-size SYN-flood packets
#   benches/cluster.sh --quick    # 1 run of 0.5 M packets
#   benches/cluster.sh --runs N
#   benches/cluster.sh --storage memory   # the bus's batches in memory (--bus-storage memory)
#   benches/cluster.sh --tls      # every node over mutual TLS (a CA and certificates made here)
#   benches/cluster.sh --stream-per-partition   # the cluster's batches in a stream a partition
#                                 # (--bus-stream-per-partition), not the default one stream
#   FLOODWATCH_BIN=/path/to/floodwatch benches/cluster.sh   # another build (A/B)
#
# Prints, as markdown tables for docs/scaling.md:
# - packets per CPU-second of each path (CPU = user+sys of every process of the path: replay alone;
#   ingest + nats-server + detector) and their ratio (issue 22's target: ≥ 80 %), also with the
#   CPU of a run of a few packets (processes, streams, consumers: the fixed costs) taken out of both;
# - the CPU cost per packet of publishing (ingest node), carrying (nats-server) and consuming
#   (detector node), in ns, for each kind of batch;
# - added detection latency: a capture with many alerts replayed at capture speed
#   (`--realtime`) in-process and through the bus (40 sources at the floor: ~80 start/end events); for each alert event, the wall time it was
#   written after its process started, bus minus in-process (median, p99, max; target p99 ≤ 50 ms).
set -euo pipefail
USER_BENCH_DIR="${BENCH_DIR:-}"
source "$(dirname "$0")/common.sh"

RUNS=3
STORAGE=file
PPS=500000
SECS=4
TLS=0
LAYOUT=()
quick_settings() { RUNS=1 SECS=1; }
bench_option() {
  case "$1" in
    --storage) STORAGE="$2" TAKEN=2 ;;
    --tls) TLS=1 ;;
    --stream-per-partition) LAYOUT=(--bus-stream-per-partition) ;;
    *) return 1 ;;
  esac
}
parse_options 24 "$@"
NATS="$(command -v nats-server || echo /usr/sbin/nats-server)"
[[ -x "$NATS" ]] || ensure_debian_package nats-server nats-server || die "nats-server is missing (apt-get install nats-server)"
NATS="$(command -v nats-server || echo /usr/sbin/nats-server)"
build_release
# FLOODWATCH_BIN=path: bench another build instead (an A/B against an earlier one)
[[ -z "${FLOODWATCH_BIN:-}" ]] || FW="$FLOODWATCH_BIN"

CAP="$BENCH_DIR/cluster-flood-$SECS.pcap"
synth_once "$CAP" syn-flood --min-size --background-pps 0 --duration "${SECS}s" --attack-start 0s \
  --attack-duration "${SECS}s" --attack-pps "$PPS" --sources 100000
PACKETS=$((PPS * SECS))

PORT="$(awk 'BEGIN { srand(); print 20000 + int(rand() * 20000) }')"
URL="nats://127.0.0.1:$PORT"
SEC=()
NATS_CONF=()
if ((TLS)); then
  # mutual TLS as docs/scaling.md deploys it: a CA, the server's and a client's certificate
  command -v openssl >/dev/null || die "--tls needs the openssl CLI (apt-get install openssl)"
  pki="$BENCH_DIR/pki"
  mkdir -p "$pki"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -keyout "$pki/ca.key" -out "$pki/ca.pem" -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  for who in server:serverAuth client:clientAuth; do
    name="${who%%:*}"
    openssl req -new "${ec[@]}" -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' "${who#*:}" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
      -extfile "$pki/$name.ext" -out "$pki/$name.pem" 2>/dev/null
  done
  printf 'tls { cert_file: "%s", key_file: "%s", ca_file: "%s", verify: true }\n' \
    "$pki/server.pem" "$pki/server.key" "$pki/ca.pem" >"$pki/nats.conf"
  NATS_CONF=(-c "$pki/nats.conf")
  URL="tls://127.0.0.1:$PORT"
  SEC=(--nats-tls-ca "$pki/ca.pem" --nats-tls-cert "$pki/client.pem" --nats-tls-key "$pki/client.key")
fi
"$NATS" -a 127.0.0.1 -p "$PORT" -js -sd "$BENCH_DIR/js" "${NATS_CONF[@]}" >"$BENCH_DIR/nats.log" 2>&1 &
NATS_PID=$!
trap 'kill $NATS_PID 2>/dev/null || true; wait $NATS_PID 2>/dev/null || true; rm -rf "$BENCH_DIR/js"; [[ -n "$USER_BENCH_DIR" ]] || rm -rf "$BENCH_DIR"' EXIT
for _ in $(seq 50); do
  (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# cpu_of PID: user+sys seconds of a running process (from /proc, clock ticks).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# What a run of each path costs besides its packets (processes starting, the cluster's streams and
# consumer made, the last evaluation): the same runs on a capture of a few packets. The in-process
# side went from 3.7 to ~17 M packets per CPU-second under issue 22, so on 2 M packets these fixed
# costs weigh noticeably; the ratio is also given with them taken out of both paths (the cost of a
# packet in a long run).
TINY="$BENCH_DIR/cluster-tiny.pcap"
synth_once "$TINY" syn-flood --background-pps 0 --duration 100ms --attack-start 0s --attack-duration 100ms \
  --attack-pps 200 --sources 10

# bus_run CAPTURE NAME MAX_BYTES [INGEST OPTION...]: one run of the bus path (a detector, then an
# ingest node publishing CAPTURE; the cluster's streams reserve MAX_BYTES); sets ING, DET, SRV (CPU
# seconds of each process) and SUMS (summaries or key aggregates published).
bus_run() {
  local cluster="$2$$" max="$3" srv0 det du ds
  local mode=("${@:4}")
  # (what nats-server still does after the last run — writing, removing — is not this run's)
  sleep 0.5
  srv0="$(cpu_of "$NATS_PID")"
  ( TIMEFORMAT='%3U %3S'; { time "$FW" detect --nats "$URL" --cluster "$cluster" --bus-max-bytes "$max" --bus-storage "$STORAGE" --partitions 0-7 \
      --exit-at-end --from-start --seed 1 -q "${SEC[@]}" "${LAYOUT[@]}" >"$BENCH_DIR/det.out" 2>"$BENCH_DIR/det.err"; } 2>"$BENCH_DIR/det.time" ) &
  det=$!
  sleep 0.3
  timed "$BENCH_DIR/ingest" "$FW" replay --publish "$URL" --cluster "$cluster" --bus-max-bytes "$max" --bus-storage "$STORAGE" --node-id 1 "${mode[@]}" "${SEC[@]}" "${LAYOUT[@]}" "$1"
  ING="$CPU"
  wait "$det" || die "detector failed: $(tail -n 3 "$BENCH_DIR/det.err")"
  read -r du ds <"$BENCH_DIR/det.time"
  DET="$(calc "$du + $ds")"
  SRV="$(calc "$(cpu_of "$NATS_PID") - $srv0")"
  SUMS="$(sed -n 's/^published: \([0-9]*\) \(summaries\|key aggregates\) .*/\1/p' "$BENCH_DIR/ingest.err")"
}

declare -a IN_CPU BUS_CPU ING_CPU SRV_CPU DET_CPU SUMS_ALL IN0_CPU BUS0_CPU
declare -a EBUS_CPU EING_CPU ESRV_CPU EDET_CPU EAGGS_ALL EBUS0_CPU
for r in $(seq "$RUNS"); do
  timed "$BENCH_DIR/inproc" "$FW" replay --quiet --seed 1 "$CAP"
  IN_CPU+=("$CPU")
  log "run $r/$RUNS in-process: $WALL s wall, $CPU s cpu"
  bus_run "$CAP" "bench$r" 512M
  cmp -s <(grep -c '"event":"start"' "$BENCH_DIR/inproc.out") <(grep -c '"event":"start"' "$BENCH_DIR/det.out") ||
    log "warning: the two paths raised different numbers of alerts"
  ING_CPU+=("$ING") DET_CPU+=("$DET") SRV_CPU+=("$SRV") SUMS_ALL+=("$SUMS")
  BUS_CPU+=("$(calc "$ING + $DET + $SRV")")
  log "run $r/$RUNS bus: ingest $ING s, nats-server $SRV s, detector $DET s cpu; $SUMS summaries"
  timed "$BENCH_DIR/inproc0" "$FW" replay --quiet --seed 1 "$TINY"
  in0="$CPU"
  IN0_CPU+=("$in0")
  bus_run "$TINY" "tiny$r" 64M
  BUS0_CPU+=("$(calc "$ING + $DET + $SRV")")
  log "run $r/$RUNS a few packets: in-process $in0 s; bus: ingest $ING s, nats-server $SRV s, detector $DET s cpu"
  bus_run "$CAP" "edge$r" 512M --edge-admission
  cmp -s <(grep -c '"event":"start"' "$BENCH_DIR/inproc.out") <(grep -c '"event":"start"' "$BENCH_DIR/det.out") ||
    log "warning: in-process and --edge-admission raised different numbers of alerts"
  EING_CPU+=("$ING") EDET_CPU+=("$DET") ESRV_CPU+=("$SRV") EAGGS_ALL+=("$SUMS")
  EBUS_CPU+=("$(calc "$ING + $DET + $SRV")")
  log "run $r/$RUNS bus, --edge-admission: ingest $ING s, nats-server $SRV s, detector $DET s cpu; $SUMS key aggregates"
  bus_run "$TINY" "etiny$r" 64M --edge-admission
  EBUS0_CPU+=("$(calc "$ING + $DET + $SRV")")
done

in_cpu="$(median "${IN_CPU[@]}")" bus_cpu="$(median "${BUS_CPU[@]}")"
ing="$(median "${ING_CPU[@]}")" srv="$(median "${SRV_CPU[@]}")" det="$(median "${DET_CPU[@]}")"
sums="$(median "${SUMS_ALL[@]}")"
in0="$(median "${IN0_CPU[@]}")" bus0="$(median "${BUS0_CPU[@]}")"
ebus_cpu="$(median "${EBUS_CPU[@]}")" ebus0="$(median "${EBUS0_CPU[@]}")" eaggs="$(median "${EAGGS_ALL[@]}")"
eing="$(median "${EING_CPU[@]}")" esrv="$(median "${ESRV_CPU[@]}")" edet="$(median "${EDET_CPU[@]}")"
# ratio IN BUS IN0 BUS0: bus / in-process, raw and with the runs of a few packets taken out
ratio() { fixed 0 "100 * $1 / $2"; }
ratio_long() { fixed 0 "100 * ($1 - $3) / ($2 - $4 > 0.001 ? $2 - $4 : 0.001)"; }
printf '\n%s\n\n' "$(machine_line)"
printf '%s packets (%s summaries on the bus: each goes to its destination'"'"'s and its source'"'"'s partition; with --edge-admission %s key aggregates), median of %s interleaved runs\n\n' "$PACKETS" "$sums" "$eaggs" "$RUNS"
printf '| path | CPU s (user+sys) | M packets per CPU-second | CPU s of a run of a few packets | / in-process | / in-process, the run of a few packets taken out of both (a packet'"'"'s cost in a long run) |\n|---|---:|---:|---:|---:|---:|\n'
printf '| in-process `replay` | %s | %s | %s | | |\n' "$in_cpu" "$(fixed 2 "$PACKETS / $in_cpu / 1e6")" "$in0"
printf '| bus, summaries: ingest + nats-server + detector | %s | %s | %s | %s %% | %s %% |\n' "$bus_cpu" "$(fixed 2 "$PACKETS / $bus_cpu / 1e6")" "$bus0" \
  "$(ratio "$in_cpu" "$bus_cpu")" "$(ratio_long "$in_cpu" "$bus_cpu" "$in0" "$bus0")"
printf '| bus, aggregates (`--edge-admission`) | %s | %s | %s | %s %% | %s %% |\n\n' "$ebus_cpu" "$(fixed 2 "$PACKETS / $ebus_cpu / 1e6")" "$ebus0" \
  "$(ratio "$in_cpu" "$ebus_cpu")" "$(ratio_long "$in_cpu" "$ebus_cpu" "$in0" "$ebus0")"
printf '| cost per packet, ns of CPU | summaries | aggregates |\n|---|---:|---:|\n'
printf '| ingest node (read, decode, partition or aggregate, encode, publish) | %s | %s |\n' "$(fixed 0 "$ing * 1e9 / $PACKETS")" "$(fixed 0 "$eing * 1e9 / $PACKETS")"
printf '| nats-server (JetStream, %s storage) | %s | %s |\n' "$STORAGE" "$(fixed 0 "$srv * 1e9 / $PACKETS")" "$(fixed 0 "$esrv * 1e9 / $PACKETS")"
printf '| detector node (consume, decode, merge, detect) | %s | %s |\n' "$(fixed 0 "$det * 1e9 / $PACKETS")" "$(fixed 0 "$edet * 1e9 / $PACKETS")"

# latency: 40 sources flooding at the source floor (many alerts), at capture speed, in-process and through the bus
LAT="$BENCH_DIR/cluster-sources.pcap"
synth_once "$LAT" sources-at-floor --duration 10s --attack-start 2s --attack-duration 5s --sources 40 --attack-pps 48000 --background-pps 500
# stamp FILE: each line of stdin prefixed with the wall time in ns
now_ns() { local t="${EPOCHREALTIME/./}"; printf '%s000' "$t"; }
stamp() { while IFS= read -r l; do printf '%s000 %s\n' "${EPOCHREALTIME/./}" "$l"; done >"$1"; }
t0="$(now_ns)"
"$FW" replay --realtime --quiet --seed 1 "$LAT" | stamp "$BENCH_DIR/lat-in.txt"
in_t0="$t0"
cluster="lat$$"
"$FW" detect --nats "$URL" --cluster "$cluster" --bus-max-bytes 512M --bus-storage "$STORAGE" --partitions 0-7 --exit-at-end --seed 1 -q \
  "${SEC[@]}" "${LAYOUT[@]}" | stamp "$BENCH_DIR/lat-bus.txt" &
det=$!
sleep 0.5
bus_t0="$(now_ns)"
"$FW" replay --realtime --publish "$URL" --cluster "$cluster" --bus-max-bytes 512M --bus-storage "$STORAGE" --node-id 1 -q "${SEC[@]}" "${LAYOUT[@]}" "$LAT"
wait "$det"
# per event id: (wall ns since its process start) bus - in-process
awk -v a="$in_t0" -v b="$bus_t0" '
  function key(line,  m) { match(line, /"event":"[a-z]*","id":"[^"]*"/); return substr(line, RSTART, RLENGTH) }
  FNR == NR { k = key($0); if (k != "") t[k] = $1 - a; next }
  { k = key($0); if (k in t) { d = ($1 - b - t[k]) / 1e6; print d } }
' "$BENCH_DIR/lat-in.txt" "$BENCH_DIR/lat-bus.txt" | sort -g >"$BENCH_DIR/lat.txt"
n="$(wc -l <"$BENCH_DIR/lat.txt")"
[[ "$n" -gt 0 ]] || die "no event matched between the two latency runs"
p() { awk -v q="$1" -v n="$n" 'NR == (int(q * n + 0.999999) < 1 ? 1 : int(q * n + 0.999999)) { printf "%.1f", $1 }' "$BENCH_DIR/lat.txt"; }
printf '\n| added latency through the bus (%s events, capture speed) | ms |\n|---|---:|\n' "$n"
printf '| median | %s |\n| p99 | %s |\n| max | %s |\n' "$(p 0.5)" "$(p 0.99)" "$(p 1)"
