#!/usr/bin/env bash
# Installs what pare needs and a fresh machine may lack: the Fashion-MNIST IDX files (Debian
# package dataset-fashion-mnist), ONNX's operator test cases (libonnx-testdata, read by
# crates/pare/tests/onnx_node_cases.rs) and a Rust toolchain check. Safe to run again: it
# skips what is already there.
set -euo pipefail

# need VAR PATH PACKAGE WHAT: PATH is there, or (VAR unset) the Debian PACKAGE installs it.
need() {
  local var=$1 path=$2 package=$3 what=$4
  [ -e "$path" ] && return 0
  if [ -n "${!var:-}" ]; then
    echo "setup: $var=${!var} has no $what" >&2
    exit 1
  fi
  echo "setup: installing the Debian package $package"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
}

DATA_DIR="${PARE_DATA:-/usr/share/datasets/fashion-mnist}"
IDX="$DATA_DIR/train-images-idx3-ubyte"
[ -f "$IDX" ] || need PARE_DATA "$IDX.gz" dataset-fashion-mnist "Fashion-MNIST IDX files"
ONNX_CASES="${PARE_ONNX_TESTDATA:-/usr/share/libonnx-testdata/data/node}"
need PARE_ONNX_TESTDATA "$ONNX_CASES" libonnx-testdata "ONNX node test cases"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed (install Rust 1.95 or newer with rustup)" >&2
  exit 1
fi
echo "setup: Fashion-MNIST at $DATA_DIR, ONNX test cases at $ONNX_CASES, $(cargo --version)"
