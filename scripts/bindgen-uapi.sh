#!/bin/sh
# uapi headers as Rust, by bindgen: the one definition of the ABI for the module (Kbuild
# generates rust/nvmx_uapi_generated.rs and rust/kvm_uapi_generated.rs, included by
# rust/uapi.rs) and for nvmx-status (its build.rs, nvmx.h only).
#   bindgen-uapi.sh nvmx BINDGEN OUTPUT [clang arguments]
#       include/uapi/linux/nvmx.h; the clang arguments find <linux/types.h>, <linux/ioctl.h>
#   bindgen-uapi.sh kvm BINDGEN OUTPUT KVM_H [clang arguments]
#       the structs nvmx exchanges with a VMM, from <linux/kvm.h> as the kernel exports it
#       (`make headers`: usr/include of the kernel's build tree)
# The ioctl numbers are function-like macros, which bindgen does not evaluate: the Rust side
# computes them from the generated structs.
set -eu
what=$1 bindgen=$2 out=$3
shift 3
common="--use-core --no-layout-tests --ctypes-prefix core::ffi --no-doc-comments"
case $what in
nvmx)
    header=$(cd "$(dirname "$0")/.." && pwd)/include/uapi/linux/nvmx.h
    # shellcheck disable=SC2086
    "$bindgen" "$header" $common --allowlist-type 'nvmx_.*' --allowlist-var 'NVMX_.*' \
        --blocklist-type nvmx_vcpu_list -o "$out" -- "$@"
    ;;
kvm)
    header=$1
    shift
    types='kvm_run|kvm_regs|kvm_sregs|kvm_segment|kvm_dtable|kvm_cpuid_entry2|kvm_device_attr'
    types="$types|kvm_dirty_log|kvm_clear_dirty_log|kvm_clock_data|kvm_xcrs|kvm_xcr|kvm_vcpu_events"
    types="$types|kvm_vapic_addr|kvm_irq_routing_entry|kvm_irq_level|kvm_ioeventfd|kvm_irqfd|kvm_x86_mce"
    types="$types|kvm_guest_debug|kvm_interrupt"
    types="$types|kvm_enable_cap|kvm_msi|kvm_msr_entry|kvm_fpu|kvm_debugregs"
    types="$types|kvm_userspace_memory_region|kvm_userspace_memory_region2"
    # No Default for the types with unions: bindgen would zero them in generated unsafe
    # code, and nvmx never makes one (it reads them from the VMM or writes them in place).
    # shellcheck disable=SC2086
    "$bindgen" "$header" $common --allowlist-type "$types" --with-derive-default \
        --no-default 'kvm_run.*|kvm_enable_cap|kvm_(hyperv|xen)_exit.*|kvm_(clear_)?dirty_log.*|kvm_irq_(routing_entry|level).*' -o "$out" -- "$@"
    ;;
*)
    echo "usage: $0 nvmx|kvm BINDGEN OUTPUT ..." >&2
    exit 2
    ;;
esac
