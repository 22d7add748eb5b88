#!/usr/bin/env bash
# Install everything the build and the test machines need, from Debian's archive and crates.io
# only. Idempotent; run as root. See shared notes toolchain.md for why each piece is needed.
set -euo pipefail

CACHE=${NVMX_CACHE:-$HOME/.cache/nvmx}
STAMP=$CACHE/setup-host.v1.stamp
mkdir -p "$CACHE"

if [ -e "$STAMP" ] && command -v clang-19 >/dev/null && [ -e /usr/src/linux-source-7.3.tar.xz ] \
   && [ -x "$CACHE/bin/bindgen" ] && [ -x /usr/bin/rustc ]; then
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "setup-host: must run as root (apt-get)" >&2; exit 1; }

# The machine's own bookworm entry tells us the URI and keyring to reuse.
src=/etc/apt/sources.list.d/debian.sources
uri=http://deb.debian.org/debian
key=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -r "$src" ]; then
    u=$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' "$src"); [ -n "$u" ] && uri=$u
    k=$(awk '/^Signed-By:/ {print $2; exit}' "$src"); [ -n "$k" ] && key=$k
fi

cat > /etc/apt/sources.list.d/nvmx-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports trixie-backports
Components: main
Signed-By: $key

# Source only: Bochs 3.0 is built from trixie's orig tarball; no binary comes from trixie.
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: $key
SRC

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    linux-source-7.3 rustc-web rust-web-src clang-19 lld-19 llvm-19 libclang-19-dev \
    bochsbios vgabios busybox-static isolinux syslinux-common xorriso \
    flex bison bc libelf-dev libssl-dev cpio make gcc g++ xz-utils dpkg-dev patch rsync kmod
apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86

# bindgen-cli: the kernel needs >= 0.71.1; Debian bookworm has none that new.
if [ ! -x "$CACHE/bin/bindgen" ]; then
    LIBCLANG_PATH=/usr/lib/llvm-19/lib cargo install --locked --root "$CACHE" bindgen-cli@0.73.2
fi
touch "$STAMP"
