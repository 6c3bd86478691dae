#!/usr/bin/env bash
# Builds the redistributable test/demo clips in test-videos/ from Debian's opencv-doc package.
# Idempotent: does nothing when the outputs exist. See test-videos/README.md for provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=/usr/share/doc/opencv-doc/examples/data/vtest.avi
OUT=test-videos/pets09-s2l1.mp4
mkdir -p test-videos
if [ -s "$OUT" ]; then echo "[test-videos] $OUT present"; exit 0; fi
if [ ! -f "$SRC" ]; then echo "[test-videos] $SRC missing: install opencv-doc (scripts/setup.sh does)" >&2; exit 1; fi
echo "[test-videos] transcoding $SRC -> $OUT (H.264, 400 kbit/s, keyframe every 2 s)"
gst-launch-1.0 -q filesrc location="$SRC" ! avidemux ! decodebin ! videoconvert \
  ! video/x-raw,format=I420 \
  ! x264enc bitrate=400 speed-preset=medium key-int-max=20 bframes=0 threads=2 \
  ! video/x-h264,profile=high ! h264parse ! mp4mux faststart=true \
  ! filesink location="$OUT.part"
mv "$OUT.part" "$OUT"
ls -l "$OUT"
