/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * nvmx: a minimal VMX hypervisor with nested virtualization.
 *
 * /dev/nvmx speaks a subset of the KVM ABI (ioctl type KVMIO = 0xAE, see <linux/kvm.h> and
 * Documentation/nvmx.rst). The ioctls below are nvmx's own and use their own type, 0xBB.
 */
#ifndef _UAPI_LINUX_NVMX_H
#define _UAPI_LINUX_NVMX_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define NVMX_IOCTL_TYPE 0xBB

/* nvmx_host_status.features */
#define NVMX_HOST_EPT			(1U << 0)
#define NVMX_HOST_UNRESTRICTED_GUEST	(1U << 1)
#define NVMX_HOST_VPID			(1U << 2)
#define NVMX_HOST_SHADOW_VMCS		(1U << 3)
#define NVMX_HOST_PREEMPTION_TIMER	(1U << 4)

/* nvmx_host_status.flags */
#define NVMX_STATUS_NESTED	(1U << 0)	/* nested VMX offered (module parameter nested=1) */
#define NVMX_STATUS_VMX_BUSY	(1U << 1)	/* CR4.VMXE set outside nvmx: another hypervisor holds VMX */

/*
 * Host-wide facts: the first ones as found when the module was loaded, flags and nr_vcpus
 * as of the call. Every field is written; reserved fields are zero.
 */
struct nvmx_host_status {
	__u32 vmcs_revision;	/* IA32_VMX_BASIC[30:0] */
	__u32 online_cpus;	/* CPUs online at load */
	__u32 vmx_cpus;		/* CPUs that completed VMXON/VMXOFF at load */
	__u32 features;		/* NVMX_HOST_* */
	__u64 vmx_basic;	/* IA32_VMX_BASIC */
	__u64 ept_vpid_cap;	/* IA32_VMX_EPT_VPID_CAP */
	__u64 feature_control;	/* IA32_FEATURE_CONTROL */
	__u32 flags;		/* NVMX_STATUS_* */
	__u32 nr_vcpus;		/* vCPUs open on the host */
	/*
	 * Of the vCPUs closed since the module was loaded (struct nvmx_vcpu_stats, summed when
	 * each fd is released): the VM exits nvmx took while L2 ran, and of those the nested VM
	 * exits it reflected to L1; the rest nvmx handled itself (EPT02 fills, host
	 * interrupts, ...). Where a nested workload's exits went.
	 */
	__u64 closed_l2_exits;
	__u64 closed_l2_exits_reflected;
};

/* Errors: EFAULT if the argument cannot be written. */
#define NVMX_GET_HOST_STATUS	_IOR(NVMX_IOCTL_TYPE, 0x00, struct nvmx_host_status)

/* nvmx_entry_failure.kind: why the last nested VMLAUNCH/VMRESUME failed */
#define NVMX_ENTRY_OK		0	/* none failed */
#define NVMX_ENTRY_CONTROLS	1	/* VMfailValid(7): SDM 27.2.1 */
#define NVMX_ENTRY_HOST_STATE	2	/* VMfailValid(8): SDM 27.2.2-27.2.4 */
#define NVMX_ENTRY_GUEST_STATE	3	/* VM-entry failure exit 0x80000021: SDM 27.3 */

/* The check a nested VM entry failed: which VMCS12 field had which value, and the rule. */
struct nvmx_entry_failure {
	__u32 kind;		/* NVMX_ENTRY_* */
	__u32 field;		/* VMCS field encoding */
	__u64 value;		/* the field's value */
	__u64 qualification;	/* exit qualification (NVMX_ENTRY_GUEST_STATE) */
	char section[16];	/* SDM section, NUL-terminated, e.g. "27.2.1.1" */
	char rule[128];		/* the expected condition, NUL-terminated */
};

/* nvmx_vcpu_status.flags */
#define NVMX_VCPU_VMX_EXPOSED	(1U << 0)	/* CPUID.1:ECX.VMX offered to the vCPU */
#define NVMX_VCPU_VMXON		(1U << 1)	/* L1 is in VMX operation */
#define NVMX_VCPU_GUEST_MODE	(1U << 2)	/* L2 is running */

/* One open vCPU, as of its last KVM_RUN or KVM_SET_CPUID2. */
struct nvmx_vcpu_status {
	__u64 key;		/* nvmx's own id of the vCPU, unique while loaded */
	__u32 vm_id;		/* nvmx's id of the VM, unique while loaded */
	__u32 vcpu_id;
	__u32 pid;		/* thread group that created the VM */
	__u32 flags;		/* NVMX_VCPU_* */
	struct nvmx_entry_failure last_failure;
};

struct nvmx_vcpu_list {
	__u32 nent;		/* in: room in entries[]; out: the number of open vCPUs */
	__u32 padding;
	struct nvmx_vcpu_status entries[];
};

/*
 * On /dev/nvmx: every open vCPU of the host. Errors: E2BIG if nent is too small (nent is
 * written back with the number needed), EFAULT.
 */
#define NVMX_GET_VCPU_LIST	_IOWR(NVMX_IOCTL_TYPE, 0x01, struct nvmx_vcpu_list)

/* On a vCPU fd: its last failed nested VM entry (kind NVMX_ENTRY_OK: none). EFAULT. */
#define NVMX_GET_ENTRY_FAILURE	_IOR(NVMX_IOCTL_TYPE, 0x02, struct nvmx_entry_failure)

/*
 * Path-length counters of one vCPU since it was created, for benchmarks (`make bench`) and
 * for seeing where a nested workload's exits go. KVM's counterpart is KVM_GET_STATS_FD
 * ("exits"), which nvmx does not offer.
 */
struct nvmx_vcpu_stats {
	__u64 exits;			/* VM exits nvmx took while the vCPU ran (L1 and L2) */
	__u64 l2_exits;			/* of those, while L2 ran */
	__u64 l2_exits_reflected;	/* nested VM exits to L1 (L2 exits L1 asked for, events) */
	__u64 nested_entries;		/* L1's VMLAUNCH/VMRESUME that entered L2 */
	__u64 vmx_regions;		/* VMXON...VMXOFF pairs (IRQs-off regions) */
	__u64 ept02_fills;		/* L2 EPT violations nvmx resolved by filling EPT02 */
	__u64 user_exits;		/* KVM_RUN returns with an exit for userspace */
	__u64 reserved[9];
};

/* On a vCPU fd: its counters. EFAULT. */
#define NVMX_GET_VCPU_STATS	_IOR(NVMX_IOCTL_TYPE, 0x03, struct nvmx_vcpu_stats)

#endif /* _UAPI_LINUX_NVMX_H */
