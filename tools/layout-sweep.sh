#!/usr/bin/env bash
# Inference layout sweep (issue 16): `gridwatch bench capacity` with busy cameras on the first
# C cores of this machine (taskset), for each C, with every layout W workers × T intra-op
# threads that fills them (W × T = C, T ≤ 4; the default layout, docs/config.md
# `[inference]`, is among them). Prints each run's table, then one summary line per layout:
# the largest camera count delivered at ≥ 95 %, and the CPU it took.
#
# Usage: tools/layout-sweep.sh [C ...]     (default: 2 4 8; counts over this machine's are skipped)
# Env:   GRIDWATCH   the binary (default target/release/gridwatch; `make build` builds it)
#        CLIP        the clip every camera loops (default: the shared busy 720p arterial clip)
#        PER_CORE    camera counts per core, each run as C × it (default "4 8")
#        WARMUP_SECS, SECS   bench capacity's warm-up and window (default 10 and 30)
# One layout takes about 2 minutes per camera count on the box of docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PER_CORE="${PER_CORE:-4 8}"
. tools/capacity-env.sh layout-sweep
command -v taskset >/dev/null || { echo "layout-sweep: taskset (util-linux) is needed" >&2; exit 2; }
have=$(nproc --all)
summary=()
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
cores=("$@")
[ ${#cores[@]} -gt 0 ] || cores=(2 4 8)
for c in "${cores[@]}"; do
  if ! [[ "$c" =~ ^[1-9][0-9]*$ ]]; then echo "layout-sweep: '$c' is not a core count" >&2; exit 2; fi
  if [ "$c" -gt "$have" ]; then echo "== $c cores: skipped, this machine has $have"; continue; fi
  counts=$(for k in $PER_CORE; do printf '%s,' $((c * k)); done); counts=${counts%,}
  for t in 1 2 4; do
    [ "$t" -le "$c" ] && [ $((c % t)) -eq 0 ] || continue
    w=$((c / t))
    echo "== $c cores (taskset -c 0-$((c - 1))), layout ${w}×${t}, cameras $counts"
    taskset -c "0-$((c - 1))" "$BIN" bench capacity --clip "$CLIP" --cameras "$counts" \
      --warmup-secs "$WARMUP_SECS" --secs "$SECS" --workers "$w" --intra-op-threads "$t" | tee "$tmp"
    out=$(cat "$tmp")
    # The largest count at ≥ 95 % and its CPU (the table's 8th column).
    best=$(echo "$out" | sed -n 's/^largest camera count with ≥ 95 % delivered: //p')
    cpu=$(echo "$out" | awk -v n="$best" '$1 == n && $2 ~ /^[0-9]+$/ { print $8 }')
    default=""; [ "$t" -eq $((c < 2 ? c : 2)) ] && default=" (the default)"
    summary+=("$c cores, ${w}×${t}$default: largest count at ≥ 95 %: $best${cpu:+ (CPU $cpu cores)}")
  done
done
echo "== summary ($(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
printf '%s\n' "${summary[@]}"
