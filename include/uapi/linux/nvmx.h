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

/*
 * Host-wide facts, as found when the module was loaded. Every field is written; reserved
 * fields are zero.
 */
struct nvmx_host_status {
	__u32 vmcs_revision;	/* IA32_VMX_BASIC[30:0] */
	__u32 online_cpus;	/* CPUs online at load */
	__u32 vmx_cpus;		/* CPUs that completed VMXON/VMXOFF at load */
	__u32 features;		/* NVMX_HOST_* */
	__u64 vmx_basic;	/* IA32_VMX_BASIC */
	__u64 ept_vpid_cap;	/* IA32_VMX_EPT_VPID_CAP */
	__u64 reserved[4];
};

/* Errors: EFAULT if the argument cannot be written. */
#define NVMX_GET_HOST_STATUS	_IOR(NVMX_IOCTL_TYPE, 0x00, struct nvmx_host_status)

#endif /* _UAPI_LINUX_NVMX_H */
