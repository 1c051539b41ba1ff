#!/usr/bin/env bash
# Runs the criterion benches (cargo bench, release) and prints their median throughput as a markdown
# table ready to paste into docs/performance.md. Arguments go to cargo bench, e.g.
#   benches/criterion.sh                      # decode, engine, pipeline (~6 min on 2 idle cores)
#   benches/criterion.sh --bench engine       # one bench file
#   benches/criterion.sh --bench decode -- ipv6   # a criterion name filter
set -euo pipefail
source "$(dirname "$0")/common.sh"
case "${1:-}" in -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
out="$BENCH_DIR/criterion.txt"
(cd "$ROOT" && cargo bench "$@") | tee "$out" >&2
printf '\n### Criterion benches\n\nMachine: %s. Median of criterion'"'"'s estimate; packets/s.\n\n' "$(machine_line)"
printf '| bench | packets/s | time per packet |\n|---|---:|---:|\n'
awk '/^[A-Za-z0-9_]+\/[A-Za-z0-9_]+/ { name = $1 }
     # the median is the middle of criterion'"'"'s [low median high] triple
     function mid(tag,   i) { for (i = 1; i <= NF; i++) if ($i == tag) return $(i + 3) " " $(i + 4) }
     /time:/ && name != "" && !(name in t) { t[name] = mid("time:") }
     /thrpt:/ && name != "" && !(name in seen) { seen[name] = 1
       printf "| `%s` | %s | %s |\n", name, mid("thrpt:"), t[name] }' "$out"
