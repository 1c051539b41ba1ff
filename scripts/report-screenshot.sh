#!/usr/bin/env bash
# Regenerates docs/report-syn-flood.png: the incident report of the bundled SYN-flood capture as
# headless Chromium shows it at 1280 px wide (the whole page, light theme). Run it after changing
# the report's look, and commit the picture with the change.
#
#   scripts/report-screenshot.sh [OUT.png]      # default docs/report-syn-flood.png
#
# Needs Debian's chromium-headless-shell (or FLOODWATCH_CHROMIUM=/path/to/chromium). HEIGHT sets
# the window height in px (default 2700: the page's height today). pngcrush, when installed,
# makes the file smaller; nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/report-syn-flood.png}
height=${HEIGHT:-2700}

browser=${FLOODWATCH_CHROMIUM:-}
if [ -z "$browser" ]; then
  for candidate in chromium-headless-shell /usr/lib/chromium/chromium-headless-shell chromium; do
    if command -v "$candidate" >/dev/null 2>&1; then
      browser=$(command -v "$candidate")
      break
    fi
  done
fi
if [ -z "$browser" ]; then
  echo "report-screenshot: no headless Chromium: apt-get install chromium-headless-shell" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The page names the capture as given: keep the repository-relative path.
cargo run --quiet -- report --quiet captures/syn-flood.pcap -o "$tmp/syn-flood.html"

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$tmp/profile" --host-resolver-rules='MAP * ~NOTFOUND' \
  --virtual-time-budget=5000 --window-size="1280,$height" \
  --screenshot="$tmp/shot.png" "file://$tmp/syn-flood.html" >/dev/null 2>&1

if command -v pngcrush >/dev/null 2>&1; then
  pngcrush -q "$tmp/shot.png" "$tmp/crushed.png"
  mv "$tmp/crushed.png" "$tmp/shot.png"
fi
mkdir -p "$(dirname "$out")"
cp "$tmp/shot.png" "$out"
echo "report-screenshot: wrote $out ($(( $(stat -c %s "$out") / 1024 )) KB, 1280x$height)"
