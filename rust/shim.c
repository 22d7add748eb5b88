// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel facilities nvmx needs that Linux 7.3 exposes to Rust neither as a safe API nor as a
 * binding (they are static inlines or macros). Each wrapper is one call, no logic: the logic
 * stays in Rust (rust/shim.rs declares these and states their contracts).
 */
#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/cred.h>
#include <linux/cpumask.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/sysfs.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <asm/cpu_entry_area.h>
#include <asm/desc.h>
#include <asm/fpu/api.h>
#include <asm/gsseg.h>
#include <asm/io.h>
#include <asm/mce.h>
#include <asm/msr.h>
#include <asm/segment.h>
#include <asm/tsc.h>

#include "shim.h"

/*
 * PREEMPT_RT turns spinlock_t into a sleeping lock, and nvmx takes its spinlocks (the
 * mailboxes, the VM's vCPU list) inside IRQs-off regions in VMX operation.
 */
#ifdef CONFIG_PREEMPT_RT
#error "nvmx does not support PREEMPT_RT kernels: it takes spinlocks with IRQs off"
#endif

void nvmx_on_each_cpu(void (*func)(void *info), void *info)
{
	on_each_cpu(func, info, 1);
}

unsigned int nvmx_this_cpu(void)
{
	return smp_processor_id();
}

unsigned int nvmx_num_online_cpus(void)
{
	return num_online_cpus();
}

void nvmx_cpus_read_lock(void)
{
	cpus_read_lock();
}

void nvmx_cpus_read_unlock(void)
{
	cpus_read_unlock();
}

u64 nvmx_page_to_phys(struct page *page)
{
	return page_to_phys(page);
}

int nvmx_rdmsr_safe(u32 msr, u64 *val)
{
	return rdmsrq_safe(msr, val);
}

/*
 * VM and vCPU file descriptors (KVM gives each its own anon-inode fd). The file's private
 * data is a reference owned by the fd, handed over by Rust (Arc::into_foreign) and given
 * back in release. .owner pins nvmx while any such fd is open.
 */
static long vm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return nvmx_vm_ioctl(file->private_data, cmd, arg);
}

static int vm_release(struct inode *inode, struct file *file)
{
	nvmx_vm_release(file->private_data);
	return 0;
}

static const struct file_operations nvmx_vm_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vm_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = vm_release,
	.llseek = noop_llseek,
};

static long vcpu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return nvmx_vcpu_ioctl(file->private_data, cmd, arg);
}

static int vcpu_release(struct inode *inode, struct file *file)
{
	nvmx_vcpu_release(file->private_data);
	return 0;
}

/* The kvm_run mmap: page 0 is struct kvm_run, page 1 the PIO data page. */
static vm_fault_t vcpu_fault(struct vm_fault *vmf)
{
	struct page *page = nvmx_vcpu_mmap_page(vmf->vma->vm_file->private_data, vmf->pgoff);

	if (!page)
		return VM_FAULT_SIGBUS;
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct nvmx_vcpu_vm_ops = {
	.fault = vcpu_fault,
};

static int vcpu_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_pgoff + vma_pages(vma) > NVMX_VCPU_MMAP_PAGES)
		return -EINVAL;
	vma->vm_ops = &nvmx_vcpu_vm_ops;
	return 0;
}

static const struct file_operations nvmx_vcpu_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vcpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = vcpu_mmap,
	.release = vcpu_release,
	.llseek = noop_llseek,
};

int nvmx_vm_fd(void *vm)
{
	return anon_inode_getfd("nvmx-vm", &nvmx_vm_fops, vm, O_RDWR | O_CLOEXEC);
}

int nvmx_vcpu_fd(void *vcpu)
{
	return anon_inode_getfd("nvmx-vcpu", &nvmx_vcpu_fops, vcpu, O_RDWR | O_CLOEXEC);
}

/* Guest memory is pinned for the life of its slot (FOLL_LONGTERM: not in movable zones). */
long nvmx_pin_user_pages(unsigned long start, unsigned long nr, struct page **pages)
{
	return pin_user_pages_fast(start, nr, FOLL_WRITE | FOLL_LONGTERM, pages);
}

void nvmx_unpin_user_pages(struct page **pages, unsigned long nr)
{
	unpin_user_pages(pages, nr);
}

/*
 * Long-term pinned guest memory counts against the VMM's RLIMIT_MEMLOCK, as VFIO's does
 * (unless it has CAP_IPC_LOCK). Charge the current mm and keep a reference to it for the
 * uncharge, which may run from another task (the last fd closed elsewhere).
 */
void *nvmx_charge_locked(unsigned long pages, int *err)
{
	struct mm_struct *mm = current->mm;

	*err = account_locked_vm(mm, pages, true);
	if (*err)
		return NULL;
	mmgrab(mm);
	return mm;
}

void nvmx_uncharge_locked(void *mm, unsigned long pages)
{
	account_locked_vm(mm, pages, false);
	mmdrop(mm);
}

void *nvmx_page_address(struct page *page)
{
	return page_address(page);
}

unsigned long nvmx_task_size_max(void)
{
	return TASK_SIZE_MAX;
}

/*
 * Host state around a VMX region. A VM exit loads the selectors of DS/ES/FS/GS and LDTR
 * with 0, TR's limit with 0x67 and the GDTR/IDTR limits with 0xffff (SDM 28.5.2); restore
 * what the current task and CPU had, as KVM does around its runs.
 */
void nvmx_host_state_save(struct nvmx_host_state *s)
{
	savesegment(ds, s->ds);
	savesegment(es, s->es);
	savesegment(fs, s->fs);
	savesegment(gs, s->gs);
	asm volatile("sldt %0" : "=r"(s->ldt));
	rdmsrq(MSR_FS_BASE, s->fs_base);
	rdmsrq(MSR_GS_BASE, s->gs_base);
	rdmsrq(MSR_KERNEL_GS_BASE, s->kernel_gs_base);
	native_store_gdt((struct desc_ptr *)&s->gdt_limit);
	store_idt((struct desc_ptr *)&s->idt_limit);
	s->tr_base = (unsigned long)&get_cpu_entry_area(smp_processor_id())->tss.x86_tss;
}

/*
 * invalidate_tss_limit() without load_direct_gdt(), which 7.3 exports to KVM only: a task
 * with an I/O bitmap needs the full TSS limit back now (reload TR through the writable GDT,
 * as native_load_tr_desc() does); for the others the limit is refreshed lazily when one is
 * switched to.
 */
static void nvmx_invalidate_tss_limit(void)
{
	if (unlikely(test_thread_flag(TIF_IO_BITMAP))) {
		int cpu = smp_processor_id();
		struct desc_struct *d = get_cpu_gdt_rw(cpu);
		struct desc_ptr direct = {
			.address = (unsigned long)d,
			.size = GDT_SIZE - 1,
		};
		tss_desc tss;

		memcpy(&tss, &d[GDT_ENTRY_TSS], sizeof(tss));
		tss.type = DESC_TSS; /* LTR needs an available TSS; the exit left it busy */
		write_gdt_entry(d, GDT_ENTRY_TSS, &tss, DESC_TSS);
		native_load_gdt(&direct);
		asm volatile("ltr %w0" : : "q"(GDT_ENTRY_TSS * 8));
		load_fixmap_gdt(cpu);
		this_cpu_write(__tss_limit_invalid, false);
	} else {
		this_cpu_write(__tss_limit_invalid, true);
	}
}

void nvmx_host_state_restore(const struct nvmx_host_state *s)
{
	native_load_gdt((const struct desc_ptr *)&s->gdt_limit);
	native_load_idt((const struct desc_ptr *)&s->idt_limit);
	if (s->ldt)
		asm volatile("lldt %0" : : "r"(s->ldt));
	if (s->ds)
		loadsegment(ds, s->ds);
	if (s->es)
		loadsegment(es, s->es);
	if (s->fs) {
		loadsegment(fs, s->fs);
		wrmsrq(MSR_FS_BASE, s->fs_base);
	}
	if (s->gs) {
		load_gs_index(s->gs);
		wrmsrq(MSR_KERNEL_GS_BASE, s->kernel_gs_base);
	}
	nvmx_invalidate_tss_limit();
}

void *nvmx_phys_to_virt(u64 phys)
{
	return phys_to_virt(phys);
}

/*
 * The FPU registers for a guest (IRQs off): the task's user state is saved to its fpstate
 * and reloaded on the way back to userspace, and nothing else in the kernel uses the
 * registers until kernel_fpu_end() — the guest's state may be loaded into them meanwhile.
 * No control-register setup (mask 0): the guest's own state replaces all of it.
 */
void nvmx_kernel_fpu_begin(void)
{
	kernel_fpu_begin_mask(0);
}

void nvmx_kernel_fpu_end(void)
{
	kernel_fpu_end();
}

/* An NMI that caused a VM exit was consumed by it: hand it to the host's handler. */
void nvmx_deliver_host_nmi(void)
{
	asm volatile("int $2");
}

/*
 * A machine check that caused a VM exit (or failed a VM entry) happened while the guest ran:
 * the host's handler decides, as for KVM (kvm_machine_check: a fake ring-3 frame, so that
 * the handler treats it as a user-mode #MC).
 */
void nvmx_machine_check(void)
{
#ifdef CONFIG_X86_MCE
	struct pt_regs regs = { .cs = 3, .flags = X86_EFLAGS_IF };

	do_machine_check(&regs);
#endif
}

/*
 * One rate limit for every message a guest or a VMM can trigger (the kernel's printk
 * defaults: 10 messages per 5 seconds), so that dmesg cannot be flooded through nvmx.
 * Callable with IRQs off.
 */
bool nvmx_printk_ratelimit(void)
{
	static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST);

	return __ratelimit(&rs);
}

/* The caller's effective UID in the initial user namespace, and whether it is an admin. */
unsigned int nvmx_current_euid(void)
{
	return from_kuid_munged(&init_user_ns, current_euid());
}

bool nvmx_capable_sys_admin(void)
{
	return capable(CAP_SYS_ADMIN);
}

/*
 * The lock that serializes a vCPU's ioctls, as KVM's vcpu->mutex: taken killably, so that a
 * task waiting for a vCPU another task runs (KVM_RUN holds it while the guest runs or halts)
 * can always be killed, and is not a hung task.
 */
struct nvmx_ioctl_lock {
	struct mutex mutex;
};

struct nvmx_ioctl_lock *nvmx_ioctl_lock_new(void)
{
	struct nvmx_ioctl_lock *l = kzalloc(sizeof(*l), GFP_KERNEL_ACCOUNT);

	if (l)
		mutex_init(&l->mutex);
	return l;
}

void nvmx_ioctl_lock_free(struct nvmx_ioctl_lock *l)
{
	mutex_destroy(&l->mutex);
	kfree(l);
}

int nvmx_ioctl_lock_killable(struct nvmx_ioctl_lock *l)
{
	return mutex_lock_killable(&l->mutex);
}

void nvmx_ioctl_unlock(struct nvmx_ioctl_lock *l)
{
	mutex_unlock(&l->mutex);
}

/*
 * The kernel's mitigation state for VMs (rust/core/src/mitigation.rs: HostFlags, in this
 * bit order): the feature and bug bits it set at boot.
 */
unsigned int nvmx_mitigation_flags(void)
{
	u64 arch_cap = 0;

	if (boot_cpu_has(X86_FEATURE_ARCH_CAPABILITIES))
		rdmsrq_safe(MSR_IA32_ARCH_CAPABILITIES, &arch_cap);
	return (cpu_feature_enabled(X86_FEATURE_CLEAR_CPU_BUF_VM) ? 1 << 0 : 0) |
	       (cpu_feature_enabled(X86_FEATURE_RSB_VMEXIT) ? 1 << 1 : 0) |
	       (cpu_feature_enabled(X86_FEATURE_RSB_VMEXIT_LITE) ? 1 << 2 : 0) |
	       (boot_cpu_has_bug(X86_BUG_L1TF) ? 1 << 3 : 0) |
	       ((arch_cap & ARCH_CAP_SKIP_VMENTRY_L1DFLUSH) ? 1 << 4 : 0) |
	       (boot_cpu_has(X86_FEATURE_FLUSH_L1D) ? 1 << 5 : 0) |
	       (boot_cpu_has(X86_FEATURE_IBPB) ? 1 << 6 : 0);
}

bool nvmx_need_resched(void)
{
	return need_resched();
}

void nvmx_cond_resched(void)
{
	cond_resched();
}

/* The host TSC frequency (a variable, not a binding). Guests read the host's TSC unscaled. */
unsigned int nvmx_tsc_khz(void)
{
	return tsc_khz;
}

/* Make `cpu` take an interrupt (a guest running there exits); callable with IRQs off. */
void nvmx_kick_cpu(unsigned int cpu)
{
	arch_smp_send_reschedule(cpu);	/* smp_send_reschedule() without its tracepoint */
}

/*
 * /sys/kernel/nvmx: host-wide facts for nvmx-status and admins (Rust module parameters have
 * no sysfs file in 7.3). Written once at load; vmx_busy is read at each access.
 */
static struct nvmx_sysfs_facts nvmx_facts;
static struct kobject *nvmx_kobj;

static ssize_t nested_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	return sysfs_emit(buf, "%u\n", nvmx_facts.nested);
}

static ssize_t vmcs_revision_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	return sysfs_emit(buf, "0x%x\n", nvmx_facts.vmcs_revision);
}

static ssize_t vmx_cpus_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	return sysfs_emit(buf, "%u\n", nvmx_facts.vmx_cpus);
}

static ssize_t online_cpus_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	return sysfs_emit(buf, "%u\n", nvmx_facts.online_cpus);
}

static ssize_t features_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	static const char *const names[] = {
		"ept", "unrestricted_guest", "vpid", "shadow_vmcs", "preemption_timer",
	};
	int i, n = 0;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (nvmx_facts.features & (1U << i))
			n += sysfs_emit_at(buf, n, "%s%s", n ? " " : "", names[i]);
	return n + sysfs_emit_at(buf, n, "\n");
}

/* nvmx sets CR4.VMXE only inside IRQs-off regions: seen set here, it is another hypervisor's. */
static ssize_t vmx_busy_show(struct kobject *k, struct kobj_attribute *a, char *buf)
{
	return sysfs_emit(buf, "%d\n", !!(__read_cr4() & X86_CR4_VMXE));
}

static struct kobj_attribute nvmx_attrs[] = {
	__ATTR_RO(nested), __ATTR_RO(vmcs_revision), __ATTR_RO(vmx_cpus),
	__ATTR_RO(online_cpus), __ATTR_RO(features), __ATTR_RO(vmx_busy),
};

static struct attribute *nvmx_attr_list[] = {
	&nvmx_attrs[0].attr, &nvmx_attrs[1].attr, &nvmx_attrs[2].attr,
	&nvmx_attrs[3].attr, &nvmx_attrs[4].attr, &nvmx_attrs[5].attr, NULL,
};

static const struct attribute_group nvmx_attr_group = { .attrs = nvmx_attr_list };

int nvmx_sysfs_create(const struct nvmx_sysfs_facts *facts)
{
	int err;

	nvmx_facts = *facts;
	nvmx_kobj = kobject_create_and_add("nvmx", kernel_kobj);
	if (!nvmx_kobj)
		return -ENOMEM;
	err = sysfs_create_group(nvmx_kobj, &nvmx_attr_group);
	if (err) {
		kobject_put(nvmx_kobj);
		nvmx_kobj = NULL;
	}
	return err;
}

void nvmx_sysfs_remove(void)
{
	if (nvmx_kobj)
		kobject_put(nvmx_kobj);
	nvmx_kobj = NULL;
}

struct nvmx_irqfd {
	wait_queue_entry_t wait;
	poll_table pt;
	struct file *file;		/* from open until armed */
	struct eventfd_ctx *eventfd;
	wait_queue_head_t *wqh;		/* set when armed */
	int arm_err;
	void *owner;
	u32 gsi;
	struct work_struct inject;	/* a wake-up outside task context */
};

static void nvmx_irqfd_inject(struct work_struct *work)
{
	struct nvmx_irqfd *irqfd = container_of(work, struct nvmx_irqfd, inject);

	nvmx_irqfd_fire(irqfd->owner, irqfd->gsi);
}

static int nvmx_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct nvmx_irqfd *irqfd = container_of(wait, struct nvmx_irqfd, wait);
	__poll_t flags = key_to_poll(key);
	u64 cnt;

	if (flags & EPOLLIN) {
		eventfd_ctx_do_read(irqfd->eventfd, &cnt);
		/*
		 * The VM's routes and mailboxes are spinlocks that process context takes with
		 * IRQs on: from an interrupt (an eventfd signalled by a device's handler) the
		 * injection waits for a worker, as KVM's does when it cannot inject at once.
		 */
		if (in_task())
			nvmx_irqfd_fire(irqfd->owner, irqfd->gsi);
		else
			schedule_work(&irqfd->inject);
	}
	/* The eventfd's file is being released: no more wake-ups (list_del_init keeps the
	 * entry valid for the remove in nvmx_irqfd_destroy). */
	if (flags & EPOLLHUP)
		list_del_init(&wait->entry);
	return flags & EPOLLIN ? 1 : 0;
}

static void nvmx_irqfd_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct nvmx_irqfd *irqfd = container_of(pt, struct nvmx_irqfd, pt);

	irqfd->arm_err = add_wait_queue_priority_exclusive(wqh, &irqfd->wait);
	if (!irqfd->arm_err)
		irqfd->wqh = wqh;
}

struct nvmx_irqfd *nvmx_irqfd_open(int fd, void *owner, u32 gsi, int *err)
{
	struct nvmx_irqfd *irqfd = kzalloc(sizeof(*irqfd), GFP_KERNEL_ACCOUNT);
	struct eventfd_ctx *ctx;
	struct file *file;

	if (!irqfd) {
		*err = -ENOMEM;
		return NULL;
	}
	file = fget(fd);
	if (!file) {
		kfree(irqfd);
		*err = -EBADF;
		return NULL;
	}
	ctx = eventfd_ctx_fileget(file);
	if (IS_ERR(ctx)) {
		fput(file);
		kfree(irqfd);
		*err = PTR_ERR(ctx);
		return NULL;
	}
	irqfd->file = file;
	irqfd->eventfd = ctx;
	irqfd->owner = owner;
	irqfd->gsi = gsi;
	INIT_WORK(&irqfd->inject, nvmx_irqfd_inject);
	init_waitqueue_func_entry(&irqfd->wait, nvmx_irqfd_wakeup);
	init_poll_funcptr(&irqfd->pt, nvmx_irqfd_queue);
	return irqfd;
}

void *nvmx_irqfd_eventfd(struct nvmx_irqfd *irqfd)
{
	return irqfd->eventfd;
}

int nvmx_irqfd_arm(struct nvmx_irqfd *irqfd, bool *pending)
{
	__poll_t events = vfs_poll(irqfd->file, &irqfd->pt);

	fput(irqfd->file);
	irqfd->file = NULL;
	*pending = events & EPOLLIN;
	return irqfd->arm_err;
}

void nvmx_irqfd_destroy(struct nvmx_irqfd *irqfd)
{
	u64 cnt;

	if (irqfd->file)
		fput(irqfd->file);
	if (irqfd->wqh)
		eventfd_ctx_remove_wait_queue(irqfd->eventfd, &irqfd->wait, &cnt);
	/* No wake-up runs now: wait for an injection it handed to a worker. */
	cancel_work_sync(&irqfd->inject);
	eventfd_ctx_put(irqfd->eventfd);
	kfree(irqfd);
}
