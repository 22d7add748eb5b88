/* SPDX-License-Identifier: GPL-2.0 */
/* The C shim's interface; rust/shim.rs declares the same functions for Rust. */
#ifndef NVMX_SHIM_H
#define NVMX_SHIM_H

#include <linux/types.h>

struct page;

/* Pages of the vCPU mmap: struct kvm_run, PIO data (rust/vcpu.rs MMAP_PAGES). */
#define NVMX_VCPU_MMAP_PAGES 2

void nvmx_on_each_cpu(void (*func)(void *info), void *info);
unsigned int nvmx_this_cpu(void);
unsigned int nvmx_num_online_cpus(void);
void nvmx_cpus_read_lock(void);
void nvmx_cpus_read_unlock(void);
u64 nvmx_page_to_phys(struct page *page);
int nvmx_rdmsr_safe(u32 msr, u64 *val);

/* Host state a VM exit clobbers (rust/shim.rs HostState mirrors this layout). */
struct nvmx_host_state {
	u16 ds, es, fs, gs, ldt;
	u16 gdt_limit;		/* followed by gdt_base: the struct desc_ptr layout */
	u64 gdt_base;
	u16 pad;
	u16 idt_limit;
	u64 idt_base;
	u64 fs_base, gs_base, kernel_gs_base, tr_base;
} __packed;

void nvmx_host_state_save(struct nvmx_host_state *s);
void nvmx_host_state_restore(const struct nvmx_host_state *s);
void *nvmx_phys_to_virt(u64 phys);
void nvmx_kernel_fpu_begin(void);
void nvmx_kernel_fpu_end(void);
void nvmx_deliver_host_nmi(void);
void nvmx_machine_check(void);
bool nvmx_printk_ratelimit(void);
unsigned int nvmx_current_euid(void);
bool nvmx_capable_sys_admin(void);
unsigned int nvmx_mitigation_flags(void);
struct nvmx_ioctl_lock;
struct nvmx_ioctl_lock *nvmx_ioctl_lock_new(void);
void nvmx_ioctl_lock_free(struct nvmx_ioctl_lock *l);
int nvmx_ioctl_lock_killable(struct nvmx_ioctl_lock *l);
void nvmx_ioctl_unlock(struct nvmx_ioctl_lock *l);
bool nvmx_need_resched(void);
unsigned int nvmx_tsc_khz(void);
void nvmx_kick_cpu(unsigned int cpu);
void nvmx_cond_resched(void);

/* Implemented in Rust (rust/vm.rs, rust/vcpu.rs). */
long nvmx_vm_ioctl(void *vm, unsigned int cmd, unsigned long arg);
void nvmx_vm_release(void *vm);
long nvmx_vcpu_ioctl(void *vcpu, unsigned int cmd, unsigned long arg);
void nvmx_vcpu_release(void *vcpu);
struct page *nvmx_vcpu_mmap_page(void *vcpu, unsigned long pgoff);

int nvmx_vm_fd(void *vm);
int nvmx_vcpu_fd(void *vcpu);
long nvmx_pin_user_pages(unsigned long start, unsigned long nr, struct page **pages);
void nvmx_unpin_user_pages(struct page **pages, unsigned long nr);
void *nvmx_charge_locked(unsigned long pages, int *err);
void nvmx_uncharge_locked(void *mm, unsigned long pages);
void *nvmx_page_address(struct page *page);
unsigned long nvmx_task_size_max(void);

/* /sys/kernel/nvmx (the facts are copied). */
struct nvmx_sysfs_facts {
	u32 nested;
	u32 vmcs_revision;
	u32 vmx_cpus;
	u32 online_cpus;
	u32 features;	/* NVMX_HOST_* bits */
};
int nvmx_sysfs_create(const struct nvmx_sysfs_facts *facts);
void nvmx_sysfs_remove(void);

/*
 * An irqfd (KVM_IRQFD): a priority waiter on an eventfd whose wake-up calls Rust's
 * nvmx_irqfd_fire(owner, gsi) (rust/irqfd.rs) with the eventfd's wait-queue lock held and
 * IRQs off — or, for a wake-up outside task context, from a worker. Opened first (the file and its eventfd referenced), then armed (registered on
 * the wait queue), then destroyed (removed from the wait queue: no wake-up runs after).
 */
struct nvmx_irqfd;
struct nvmx_irqfd *nvmx_irqfd_open(int fd, void *owner, u32 gsi, int *err);
void *nvmx_irqfd_eventfd(struct nvmx_irqfd *irqfd);
int nvmx_irqfd_arm(struct nvmx_irqfd *irqfd, bool *pending);
void nvmx_irqfd_destroy(struct nvmx_irqfd *irqfd);
void nvmx_irqfd_fire(void *owner, u32 gsi);

#endif /* NVMX_SHIM_H */
