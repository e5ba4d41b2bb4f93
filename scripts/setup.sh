#!/usr/bin/env bash
# Installs what pare needs and a fresh machine may lack: the Fashion-MNIST IDX files (Debian
# package dataset-fashion-mnist) and a Rust toolchain check. Safe to run again: it skips what
# is already there.
set -euo pipefail

DATA_DIR="${PARE_DATA:-/usr/share/datasets/fashion-mnist}"

if [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA_DIR/train-images-idx3-ubyte" ]; then
  if [ -n "${PARE_DATA:-}" ]; then
    echo "setup: PARE_DATA=$PARE_DATA has no Fashion-MNIST IDX files" >&2
    exit 1
  fi
  echo "setup: installing the Debian package dataset-fashion-mnist"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed (install Rust 1.95 or newer with rustup)" >&2
  exit 1
fi
echo "setup: Fashion-MNIST at $DATA_DIR, $(cargo --version)"
