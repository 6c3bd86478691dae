#!/usr/bin/env bash
# One-time (idempotent) setup for building, running and testing gridwatch on Debian 12.
# - installs the Debian packages gridwatch needs (through sudo when not root)
# - fetches libonnxruntime from the PyPI onnxruntime wheel into third_party/onnxruntime/
# - transcodes the demo/test clip into test-videos/
# - installs the browser test's pinned playwright-core into tests/browser/node_modules/
#   (it drives the Debian `chromium` package; nothing is downloaded besides the npm package)
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.32.0
PKGS=(
  build-essential pkg-config clang libclang-dev curl unzip ca-certificates python3 python3-pip
  python3-venv
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  libopencv-dev opencv-doc
  mosquitto mosquitto-clients
  chromium fonts-dejavu-core fonts-wqy-microhei
  # the Debian package (tools/build-deb.sh) and its test (systemd-analyze verify)
  dpkg-dev binutils systemd adduser
)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "Debian packages: all present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; else
    log "installing Rust (rustup)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
# `make test` checks formatting and lints first.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "adding the rustfmt and clippy components (rustup)"
  rustup component add rustfmt clippy
fi

ORT_DIR=third_party/onnxruntime
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ]; then
  log "fetching ONNX Runtime $ORT_VERSION (PyPI wheel)"
  mkdir -p "$ORT_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION"
  whl=$(ls "$tmp"/onnxruntime-*.whl | head -n1)
  unzip -q -o -j "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$tmp/lib"
  mv "$tmp/lib/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB.part"
  mv "$ORT_LIB.part" "$ORT_LIB"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
log "ONNX Runtime: $ORT_LIB"

# The console's browser test (tests/console_browser.rs runs tests/browser/console.mjs).
# Node.js from Debian only when there is none (CI machines have Node 20; playwright-core
# needs >= 18).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Debian packages: nodejs npm"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "setup: Node.js $(node --version) is too old for tests/browser (playwright-core 1.61 needs >= 18;
# Debian 12's nodejs is 18)" >&2
  exit 1
fi
BROWSER_DIR=tests/browser
pw_want=$(node -p 'require("./'"$BROWSER_DIR"'/package.json").dependencies["playwright-core"]')
pw_have=$(node -p 'try { require("./'"$BROWSER_DIR"'/node_modules/playwright-core/package.json").version } catch (e) { "" }')
if [ "$pw_have" != "$pw_want" ]; then
  log "installing playwright-core $pw_want for the browser test (npm ci in $BROWSER_DIR)"
  if ! (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "setup: 'npm ci' in $BROWSER_DIR failed (is the npm registry reachable? see npm's message above)" >&2
    exit 1
  fi
fi
if ! /usr/bin/chromium --version >/dev/null 2>&1; then
  echo "setup: /usr/bin/chromium does not run (Debian package chromium)" >&2
  exit 1
fi
log "browser test: node $(node --version), playwright-core $pw_want, $(/usr/bin/chromium --version 2>/dev/null)"

# The API schema fuzzer (tests/api_schema.rs): schemathesis from PyPI, pinned with its
# dependencies, in its own venv (it shares nothing with the bench's third_party/pyvenv).
ST_VENV=third_party/pyvenv-schemathesis
ST_REQ=tests/schemathesis/requirements.txt
st_want=$(sed -n 's/^schemathesis==//p' "$ST_REQ")
st_have=$("$ST_VENV/bin/schemathesis" --version 2>/dev/null | sed -n 's/.*version //p' || true)
if [ "$st_have" != "$st_want" ]; then
  log "installing schemathesis $st_want for the API schema test (pip into $ST_VENV)"
  rm -rf "$ST_VENV"
  python3 -m venv "$ST_VENV"
  if ! "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ST_REQ"; then
    echo "setup: pip install -r $ST_REQ failed (is PyPI reachable? see pip's message above)" >&2
    exit 1
  fi
fi
log "API schema test: schemathesis $st_want ($ST_VENV)"

tools/make-test-videos.sh
log "setup complete"
