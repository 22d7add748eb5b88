# SPDX-License-Identifier: GPL-2.0
# nvmx: out-of-tree Rust kernel module. See README.md.
#
#   make            build nvmx.ko against the cached kernel tree (or KDIR=<your tree>)
#   make check      set-up from nothing + every test (cargo, Bochs with VMX, QEMU TCG)
#   make demo       set-up from nothing + nvmx loading in an emulated VMX machine
#   make bench      set-up from nothing + the benchmark against kvm_intel and nvmx in one
#                   Bochs boot -> build/bench-results/, Documentation/bench/, README table
#   make setup      only the set-up (packages, bindgen, kernel, Bochs)
#   make upstream-report  every upstream x86/common KVM selftest vs kvm_intel and nvmx
#                   (hours in Bochs) -> Documentation/upstream-report.rst

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
# Debian's rustc 1.96 (has the kernel's Rust sources) and clang-19, as the cached tree uses.
NVMX_CACHE ?= $(HOME)/.cache/nvmx
KMAKE ?= LLVM=-19 RUSTC=/usr/bin/rustc BINDGEN=$(NVMX_CACHE)/bin/bindgen

.PHONY: all module tools install setup check demo bench test-core upstream-report clean help

all: module

module:
	@kdir="$(KDIR)"; \
	if [ -z "$$kdir" ]; then \
	    kdir=$$(bash -c '. $(ROOT)/scripts/lib.sh && kernel_dir'); \
	    [ -e "$$kdir/.nvmx-built" ] || { echo "no cached kernel tree: run 'make setup' or pass KDIR=<Rust-enabled tree>" >&2; exit 1; }; \
	fi; \
	$(MAKE) -C "$$kdir" M=$(ROOT) $(KMAKE) modules

# nvmx-status, a static binary (build/nvmx-status).
tools:
	$(ROOT)/scripts/build-status-tool.sh

# The status tool and the uapi header (the module itself: `make module`, then insmod nvmx.ko
# on the kernel it was built for).
PREFIX ?= /usr/local
install: tools
	install -D -m 0755 $(ROOT)/build/nvmx-status $(DESTDIR)$(PREFIX)/sbin/nvmx-status
	install -D -m 0644 $(ROOT)/include/uapi/linux/nvmx.h $(DESTDIR)$(PREFIX)/include/linux/nvmx.h

setup:
	$(ROOT)/scripts/setup-host.sh
	$(ROOT)/scripts/build-kernel.sh >/dev/null
	$(ROOT)/scripts/build-bochs.sh >/dev/null

check:
	$(ROOT)/scripts/check.sh

demo:
	$(ROOT)/scripts/demo.sh

bench:
	$(ROOT)/scripts/bench.sh

upstream-report:
	$(ROOT)/scripts/upstream-report.sh

test-core:
	cd $(ROOT)/rust/core && cargo test
	cd $(ROOT)/rust/nvmx-status && cargo test

clean:
	@kdir=$$(bash -c '. $(ROOT)/scripts/lib.sh && kernel_dir'); \
	if [ -e "$$kdir/Makefile" ]; then $(MAKE) -s -C "$$kdir" M=$(ROOT) $(KMAKE) clean; fi
	rm -rf $(ROOT)/build $(ROOT)/rust/core/target
