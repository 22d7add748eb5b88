#!/bin/sh
# include/uapi/linux/nvmx.h as Rust: the one definition of nvmx's ABI for the module
# (Kbuild: rust/nvmx_uapi_generated.rs, included by rust/uapi.rs) and nvmx-status (its
# build.rs). Usage: bindgen-nvmx-uapi.sh BINDGEN OUTPUT [clang arguments: -I for the uapi
# headers <linux/types.h> and <linux/ioctl.h>]. The ioctl numbers are function-like macros,
# which bindgen does not evaluate: the Rust side computes them from the same structs.
set -eu
bindgen=$1 out=$2
shift 2
header=$(cd "$(dirname "$0")/.." && pwd)/include/uapi/linux/nvmx.h
"$bindgen" "$header" --use-core --no-layout-tests --ctypes-prefix core::ffi \
    --allowlist-type 'nvmx_.*' --allowlist-var 'NVMX_.*' \
    --blocklist-type nvmx_vcpu_list --no-doc-comments -o "$out" -- "$@"
