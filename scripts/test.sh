#!/usr/bin/env bash
# The whole test suite, as CI runs it. Release profile: the integration tests train on the real
# Fashion-MNIST set, which the setup step installs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo test --release --workspace
