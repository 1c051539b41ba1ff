# Shared helpers of the benchmark scripts (benches/*.sh); sourced, not run.
#
# Sets ROOT (the repository), BENCH_DIR (captures; a temp dir removed on exit unless the caller set
# BENCH_DIR, which keeps the captures for the next run) and FW (the release floodwatch binary).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TERM_COLOR=never

if [[ -n "${BENCH_DIR:-}" ]]; then
  mkdir -p "$BENCH_DIR"
else
  BENCH_DIR="$(mktemp -d -t floodwatch-bench.XXXXXX)"
  trap 'rm -rf "$BENCH_DIR"' EXIT
fi

log() { printf '%s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# build_release [cargo args…]: builds the release binary (and whatever else is asked) once.
build_release() {
  log "building release: cargo build --release --bin floodwatch $*"
  (cd "$ROOT" && cargo build --quiet --release --bin floodwatch "$@") || die "release build failed"
  FW="$ROOT/target/release/floodwatch"
}

# synth_once FILE SCENARIO [synth options…]: writes FILE unless it exists with the same options (a
# stamp file beside it holds them), so a kept BENCH_DIR skips regenerating multi-GB captures.
synth_once() {
  local file="$1"
  shift
  local stamp="$file.options"
  if [[ -f "$file" && -f "$stamp" && "$(cat "$stamp")" == "$*" ]]; then
    log "reusing $file"
    return
  fi
  log "generating $file: floodwatch synth $*"
  "$FW" synth "$@" -o "$file" >/dev/null 2>"$file.synth.log" ||
    die "synth failed: $(cat "$file.synth.log")"
  # a capture changed in the last seconds is streamed, not mapped (it may still be growing:
  # src/capture/mapped.rs); a bench measures what replaying a saved capture costs, so the new file
  # is dated a minute back (otherwise the first measurement after generating reads it streamed)
  touch -d '1 minute ago' "$file"
  printf '%s' "$*" >"$stamp"
}

# parse_options HELP_LINES ARGS…: the option loop of a bench script.
# - `-h`, `--help`: prints the script's header comment (its lines 2 to HELP_LINES) and exits;
# - `--quick`: sets QUICK=1 and calls the script's `quick_settings`, where it makes the run short;
# - `--runs N`: sets RUNS, in a script that has set RUNS (to its default);
# - any other option goes to the script's `bench_option ARGS…`, which handles "$1" (setting TAKEN=2
#   when it also takes "$2", TAKEN=$# when it takes all the rest) and returns non-zero for an option
#   it does not know (the default one knows none).
QUICK=0
quick_settings() { :; }
bench_option() { return 1; }
parse_options() {
  local help_lines="$1"
  shift
  while (($#)); do
    TAKEN=1
    case "$1" in
      -h | --help) sed -n "2,${help_lines}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      --quick) QUICK=1; quick_settings ;;
      --runs) [[ -v RUNS ]] || die "unknown option $1 (try --help)"; RUNS="${2:?--runs needs a number}" TAKEN=2 ;;
      *) bench_option "$@" || die "unknown option $1 (try --help)" ;;
    esac
    shift "$TAKEN"
  done
}

# min_size_syn_flood DURATION ATTACK_START ATTACK_DURATION: sets SYNTH to the synth options of the
# replay benches' capture: a spoofed SYN flood of minimum-size frames at 1 M packets/s over 20 k
# packets/s of benign background.
min_size_syn_flood() {
  SYNTH=(syn-flood --min-size --seed 1 --duration "$1" --attack-start "$2" --attack-duration "$3"
    --attack-pps 1000000 --background-pps 20000)
}

# median NUMBER…: the median (mean of the middle two for an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR: floating-point arithmetic through awk.
calc() { awk "BEGIN { printf \"%.6g\", $* }"; }

# fixed DIGITS EXPR: EXPR rounded to DIGITS decimals.
fixed() { awk "BEGIN { printf \"%.$1f\", $2 }"; }

# si N: 12345678 → 12.35 M.
si() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.2f M", n / 1e6; else if (n >= 1e3) printf "%.1f k", n / 1e3; else printf "%.0f", n }'; }

# timed OUT_PREFIX CMD…: runs CMD with stdout to OUT_PREFIX.out and stderr to OUT_PREFIX.err, and
# sets WALL, CPU (user+sys seconds) from bash's own `time` (millisecond resolution, no dependency).
timed() {
  local prefix="$1"
  shift
  local t
  t="$( { TIMEFORMAT='%3R %3U %3S'; time "$@" >"$prefix.out" 2>"$prefix.err"; } 2>&1 )" ||
    die "failed: $* ($(tail -n 3 "$prefix.err"))"
  read -r WALL user sys <<<"$(tail -n 1 <<<"$t")"
  CPU="$(calc "$user + $sys")"
}

# interleaved_runs: calls the script's `run_one NAME` (which runs `timed`) for each NAME of NAMES,
# RUNS times over (a b c, a b c, …: drift hits all alike), adding each run's WALL and CPU to the
# space-separated lists WALLS[NAME] and CPUS[NAME] (associative arrays the script declares) and
# logging it under LABEL[NAME].
interleaved_runs() {
  local r n
  for ((r = 1; r <= RUNS; r++)); do
    for n in "${NAMES[@]}"; do
      run_one "$n"
      WALLS[$n]+="$WALL "
      CPUS[$n]+="$CPU "
      log "run $r/$RUNS ${LABEL[$n]}: $WALL s wall, $CPU s cpu"
    done
  done
}

# machine_line: one line describing this machine for the tables.
machine_line() {
  local load
  load="$(cut -d" " -f1-3 /proc/loadavg 2>/dev/null)"
  local cpu
  cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
  printf '%s cores (nproc), %s, %s, %s, load average %s at the end' "$(nproc)" \
    "${cpu:-unknown CPU}" "$(uname -sr)" "$(date -u +%Y-%m-%d)" "${load:-unknown}"
}

# ensure_debian_package COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is missing and we
# are root; returns non-zero if COMMAND is still missing.
ensure_debian_package() {
  local cmd="$1" pkg="$2"
  if command -v "$cmd" >/dev/null 2>&1 || [[ -x "$cmd" ]]; then
    return 0
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; } >&2 || true
  fi
  command -v "$cmd" >/dev/null 2>&1 || [[ -x "$cmd" ]]
}
