# Sourced by tools/layout-sweep.sh and tools/gpu-profile-run.sh (from the repository root):
# the binary, the clip and the window of their `bench capacity` runs, from the environment
# (GRIDWATCH, CLIP, WARMUP_SECS, SECS), checked. $1: the calling script's name, for messages.
BIN="${GRIDWATCH:-target/release/gridwatch}"
CLIP="${CLIP:-../shared/media/traffic/traffic-city-arterial-multilane-elevated-720p.mp4}"
WARMUP_SECS="${WARMUP_SECS:-10}"
SECS="${SECS:-30}"
[ -x "$BIN" ] || { echo "$1: $BIN not found; build it with make build (or set GRIDWATCH)" >&2; exit 2; }
[ -f "$CLIP" ] || { echo "$1: clip $CLIP not found (../shared absent? set CLIP)" >&2; exit 2; }
