#!/usr/bin/env bash
# Build nvmx-status (rust/nvmx-status) as a static binary: the same file runs on the host
# and in the test machines' initramfs. Output: build/nvmx-status.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
target=$NVMX_ROOT/build/nvmx-status-target
CARGO_TARGET_DIR=$target RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --release --manifest-path "$NVMX_ROOT/rust/nvmx-status/Cargo.toml"
install -m 0755 "$target/release/nvmx-status" "$NVMX_ROOT/build/nvmx-status"
