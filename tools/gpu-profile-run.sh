#!/usr/bin/env bash
# GPU profile run (issue 16): what the `nvidia-dgpu` hardware profile finds on this machine,
# and what it delivers against the cpu profile on the same machine. The report says, part by
# part, what ran and what was missing:
#   - the GPU (nvidia-smi);
#   - GStreamer's NVDEC elements (nvh264dec, nvh265dec, nvh264enc from gst-plugins-bad's
#     nvcodec; nvv4l2decoder on Jetson);
#   - ONNX Runtime's CUDA and TensorRT execution providers: ORT_LIBRARY names the
#     libonnxruntime.so of an onnxruntime-gpu build, libonnxruntime_providers_cuda.so beside it;
#   - `gridwatch check` on a config with that profile;
#   - `gridwatch bench capacity --profile nvidia-dgpu` (the fp32 model: the int8 one is for
#     CPUs, docs/config.md), which execution provider each model loaded with, and the same
#     counts with `--profile cpu` and the shipped model as the baseline.
#
# Usage: tools/gpu-profile-run.sh [REPORT_DIR]        (default target/gpu-profile-run)
# Env:   GRIDWATCH    the binary (default target/release/gridwatch)
#        ORT_LIBRARY  libonnxruntime.so of a GPU build (default: the one setup fetched, CPU only)
#        CLIP         the clip every camera loops (default: the shared busy 720p arterial clip)
#        CAMERAS      camera counts (default 8,16,32), WARMUP_SECS (10), SECS (30)
# Exits 0 once the report is written, whatever was missing; 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-target/gpu-profile-run}"
CAMERAS="${CAMERAS:-8,16,32}"
. tools/capacity-env.sh gpu-profile-run
if [ -n "${ORT_LIBRARY:-}" ] && [ ! -f "$ORT_LIBRARY" ]; then
  echo "gpu-profile-run: ORT_LIBRARY $ORT_LIBRARY not found" >&2; exit 2
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT="$OUT/report.txt"
: >"$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
part() { say; say "== $*"; }

part "machine"
say "$(uname -m), $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
say "gridwatch: $BIN ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git'))"

part "GPU"
if command -v nvidia-smi >/dev/null; then
  say "ran: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -3)"
else
  say "missing: nvidia-smi (no NVIDIA driver on this machine)"
fi

part "GStreamer NVDEC/NVENC elements"
if command -v gst-inspect-1.0 >/dev/null; then
  for e in nvh264dec nvh265dec nvh264enc nvv4l2decoder; do
    if gst-inspect-1.0 --exists "$e" 2>/dev/null; then say "present: $e"; else say "missing: $e"; fi
  done
else
  say "missing: gst-inspect-1.0 (GStreamer's tools; scripts/setup.sh installs them)"
fi

part "ONNX Runtime execution providers"
ort_args=()
if [ -n "${ORT_LIBRARY:-}" ]; then
  ort_args=(--ort-library "$ORT_LIBRARY")
  dir=$(dirname "$ORT_LIBRARY")
  for p in cuda tensorrt shared; do
    f="$dir/libonnxruntime_providers_$p.so"
    if [ -f "$f" ]; then say "present: $f"; else say "missing: $f"; fi
  done
else
  say "missing: ORT_LIBRARY is unset: the CPU-only library setup fetched is used, so CUDA and"
  say "         TensorRT fall back to the CPU (the warnings below say so)"
fi

# A one-camera config with the profile, for `gridwatch check`.
cfg="$OUT/check.toml"
{
  echo 'box_id = "gpu-profile-run"'
  echo "data_dir = \"$OUT/data\""
  echo 'hardware_profile = "nvidia-dgpu"'
  echo '[api]'
  echo 'generate_token_if_none = false'
  echo '[inference]'
  [ -n "${ORT_LIBRARY:-}" ] && echo "ort_library = \"$ORT_LIBRARY\""
  echo '[models]'
  echo "coco = \"$(pwd)/models/nanodet-g-coco-416/model.toml\""
  echo '[[cameras]]'
  echo 'id = "cam"'
  echo "url = \"$(cd "$(dirname "$CLIP")" && pwd)/$(basename "$CLIP")\""
  echo 'models = ["coco"]'
} >"$cfg"
part "gridwatch check (nvidia-dgpu)"
"$BIN" check --config "$cfg" 2>&1 | grep -v '^\S*[0-9]T[0-9]' | tee -a "$REPORT" || true

capacity() { # profile model log
  local profile=$1 model=$2 log=$3
  GRIDWATCH_LOG=info "$BIN" bench capacity --profile "$profile" "${ort_args[@]}" -m "$model" \
    --clip "$CLIP" --cameras "$CAMERAS" --warmup-secs "$WARMUP_SECS" --secs "$SECS" \
    2>"$log" | tee -a "$REPORT" || say "failed: bench capacity --profile $profile (see $log)"
  # What loaded, what fell back, what could not start (once each).
  sed 's/\x1b\[[0-9;]*m//g' "$log" \
    | grep -a -o 'detector loaded model=[^ ]* providers=\[[^]]*\]\|execution provider not used.*\|cannot build pipeline[^;]*' \
    | sort | uniq -c | tee -a "$REPORT" || true
}
part "bench capacity --profile nvidia-dgpu (models/nanodet-g-coco-416, fp32)"
capacity nvidia-dgpu models/nanodet-g-coco-416 "$OUT/capacity-gpu.log"
part "bench capacity --profile cpu (shipped model), the baseline on this machine"
capacity cpu models/nanodet-g-coco-416-int8 "$OUT/capacity-cpu.log"
say
say "report: $REPORT (logs beside it)"
