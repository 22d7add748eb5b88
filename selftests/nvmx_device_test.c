// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/nvmx with the module loaded: the KVM system ioctls and nvmx's host status.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/nvmx.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#ifndef KVM_X86_QUIRK_STUFF_FEATURE_MSRS
#define KVM_X86_QUIRK_STUFF_FEATURE_MSRS (1 << 8)
#endif
#ifndef KVM_CAP_DISABLE_QUIRKS2
#define KVM_CAP_DISABLE_QUIRKS2 213
#endif

#define MISC_MAJOR 10

FIXTURE(dev) {
	int fd;
};

FIXTURE_SETUP(dev)
{
	self->fd = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->fd, 0) TH_LOG("open /dev/nvmx: %s", strerror(errno));
}

FIXTURE_TEARDOWN(dev)
{
	close(self->fd);
}

TEST(device_node_is_misc_char_device)
{
	struct stat st;

	ASSERT_EQ(0, stat("/dev/nvmx", &st)) TH_LOG("%s", strerror(errno));
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	EXPECT_EQ(MISC_MAJOR, major(st.st_rdev));
}

TEST_F(dev, api_version_is_12)
{
	EXPECT_EQ(KVM_API_VERSION, ioctl(self->fd, KVM_GET_API_VERSION, 0));
	EXPECT_EQ(12, KVM_API_VERSION);
}

TEST_F(dev, api_version_with_argument_is_einval)
{
	/* kvm_dev_ioctl: KVM_GET_API_VERSION takes no argument. */
	EXPECT_EQ(-1, ioctl(self->fd, KVM_GET_API_VERSION, 1));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(dev, unknown_capability_is_zero)
{
	EXPECT_EQ(0, ioctl(self->fd, KVM_CHECK_EXTENSION, 0x7fffffff));
	EXPECT_EQ(0, ioctl(self->fd, KVM_CHECK_EXTENSION, -1L));
}

TEST_F(dev, unimplemented_capabilities_are_zero)
{
	/* Not implemented yet; claiming any of these would be a lie. */
	static const long caps[] = { KVM_CAP_TSC_CONTROL, KVM_CAP_VAPIC,
				     KVM_CAP_X86_USER_SPACE_MSR, KVM_CAP_COALESCED_MMIO };

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		EXPECT_EQ(0, ioctl(self->fd, KVM_CHECK_EXTENSION, caps[i]))
			TH_LOG("capability %ld", caps[i]);
	}
}

TEST_F(dev, implemented_capabilities_are_one)
{
	static const long caps[] = { KVM_CAP_USER_MEMORY, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_EXT_CPUID,
				     KVM_CAP_MP_STATE, KVM_CAP_GET_TSC_KHZ, KVM_CAP_SPLIT_IRQCHIP,
				     KVM_CAP_ENABLE_CAP_VM, KVM_CAP_USER_MEMORY2,
				     KVM_CAP_GET_MSR_FEATURES, KVM_CAP_SIGNAL_MSI, KVM_CAP_IRQCHIP,
				     KVM_CAP_SET_TSS_ADDR, KVM_CAP_SET_IDENTITY_MAP_ADDR,
				     KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
				     KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, KVM_CAP_INTERNAL_ERROR_DATA,
				     KVM_CAP_VCPU_EVENTS, KVM_CAP_XSAVE, KVM_CAP_XCRS,
				     KVM_CAP_IOEVENTFD, KVM_CAP_IOEVENTFD_NO_LENGTH,
				     KVM_CAP_IOEVENTFD_ANY_LENGTH, KVM_CAP_IRQFD,
				     KVM_CAP_SET_GUEST_DEBUG, KVM_CAP_X86_ROBUST_SINGLESTEP,
				     KVM_CAP_TSC_DEADLINE_TIMER, KVM_CAP_EXCEPTION_PAYLOAD,
				     KVM_CAP_X86_TRIPLE_FAULT_EVENT, KVM_CAP_SET_BOOT_CPU_ID,
				     KVM_CAP_MSR_PLATFORM_INFO };

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		EXPECT_EQ(1, ioctl(self->fd, KVM_CHECK_EXTENSION, caps[i]))
			TH_LOG("capability %ld", caps[i]);
	}
	/* The quirks nvmx has, and that a VMM may disable. */
	EXPECT_EQ(KVM_X86_QUIRK_STUFF_FEATURE_MSRS | KVM_X86_QUIRK_LINT0_REENABLED,
		  ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2));
	/* KVM_GET_NESTED_STATE's most: header, VMCS12 and shadow VMCS12 (nested=1). */
	EXPECT_EQ(128 + 2 * 4096, ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE));
	/* KVM_GET_XSAVE2's size: struct kvm_xsave holds everything nvmx switches. */
	EXPECT_EQ(4096, ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2));
	/* KVM_SYNC_X86_VALID_FIELDS: registers, sregs and events through kvm_run. */
	EXPECT_EQ(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS,
		  ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS));
	/* KVM_MAX_MCE_BANKS. */
	EXPECT_EQ(32, ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE));
	/* KVM_GET_CLOCK's flags: real time and host TSC at the instant, never TSC_STABLE. */
	EXPECT_EQ(KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC,
		  ioctl(self->fd, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK));
}

TEST_F(dev, system_attributes_are_enxio)
{
	__u64 mask = 0;
	struct kvm_device_attr attr = { .group = 0, .attr = KVM_X86_XCOMP_GUEST_SUPP,
					.addr = (unsigned long)&mask };

	EXPECT_EQ(-1, ioctl(self->fd, KVM_HAS_DEVICE_ATTR, &attr));
	EXPECT_EQ(ENXIO, errno) TH_LOG("no dynamic XSAVE features to offer");
	EXPECT_EQ(-1, ioctl(self->fd, KVM_GET_DEVICE_ATTR, &attr));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, ioctl(self->fd, KVM_GET_DEVICE_ATTR, NULL));
	EXPECT_EQ(EFAULT, errno);
}

TEST_F(dev, unknown_ioctl_is_enotty)
{
	EXPECT_EQ(-1, ioctl(self->fd, _IO(KVMIO, 0xff), 0));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(self->fd, _IO('x', 1), 0));
	EXPECT_EQ(ENOTTY, errno);
	/* Right number, wrong size encoding: a different command. */
	EXPECT_EQ(-1, ioctl(self->fd, _IOR(NVMX_IOCTL_TYPE, 0x00, __u32), 0));
	EXPECT_EQ(ENOTTY, errno);
}

TEST_F(dev, host_status_bad_pointer_is_efault)
{
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_HOST_STATUS, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_HOST_STATUS, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	/* A kernel address is not the caller's memory. */
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_HOST_STATUS, (void *)0xffffffff81000000UL));
	EXPECT_EQ(EFAULT, errno);
}

TEST_F(dev, host_status_reports_vmx_on_every_cpu)
{
	struct nvmx_host_status st;

	memset(&st, 0xa5, sizeof(st));
	ASSERT_EQ(0, ioctl(self->fd, NVMX_GET_HOST_STATUS, &st)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(sysconf(_SC_NPROCESSORS_ONLN), st.online_cpus);
	EXPECT_EQ(st.online_cpus, st.vmx_cpus);
	EXPECT_EQ(st.vmcs_revision, st.vmx_basic & 0x7fffffff);
	EXPECT_NE(0, st.vmcs_revision);
	/* Required at load: EPT and unrestricted guest. */
	EXPECT_EQ(NVMX_HOST_EPT | NVMX_HOST_UNRESTRICTED_GUEST,
		  st.features & (NVMX_HOST_EPT | NVMX_HOST_UNRESTRICTED_GUEST));
	EXPECT_EQ(0, st.features & ~0x1fU);
	/* EPT 4-level walks (bit 6) and WB (bit 14) were required at load. */
	EXPECT_EQ((1ULL << 6) | (1ULL << 14), st.ept_vpid_cap & ((1ULL << 6) | (1ULL << 14)));
	/* VMXON needed IA32_FEATURE_CONTROL locked with VMX outside SMX. */
	EXPECT_EQ(5, st.feature_control & 5);
	EXPECT_EQ(NVMX_STATUS_NESTED, st.flags) TH_LOG("nested=1 (default), no other hypervisor");
	EXPECT_EQ(0, st.nr_vcpus);
	/* Of the exits while L2 ran (vCPUs closed since load), those reflected to L1. */
	EXPECT_LE(st.closed_l2_exits_reflected, st.closed_l2_exits);
	TH_LOG("revision %#x, %u/%u CPUs, features %#x", st.vmcs_revision, st.vmx_cpus,
	       st.online_cpus, st.features);
}

/* NVMX_GET_VCPU_LIST's buffer with room for two vCPUs. */
struct vcpu_list2 {
	struct nvmx_vcpu_list h;
	struct nvmx_vcpu_status e[2];
};

/* NVMX_GET_VCPU_LIST: the host's open vCPUs; too little room is E2BIG with the count. */
TEST_F(dev, vcpu_list_shows_open_vcpus)
{
	struct vcpu_list2 l;
	struct nvmx_entry_failure f;
	int vm, vcpu;

	memset(&l, 0, sizeof(l));
	l.h.nent = 2;
	ASSERT_EQ(0, ioctl(self->fd, NVMX_GET_VCPU_LIST, &l));
	EXPECT_EQ(0, l.h.nent);
	vm = ioctl(self->fd, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 3);
	ASSERT_LE(0, vcpu);
	l.h.nent = 0;
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_VCPU_LIST, &l));
	EXPECT_EQ(E2BIG, errno);
	EXPECT_EQ(1, l.h.nent) TH_LOG("the count needed is written back");
	l.h.nent = 2;
	ASSERT_EQ(0, ioctl(self->fd, NVMX_GET_VCPU_LIST, &l));
	ASSERT_EQ(1, l.h.nent);
	EXPECT_EQ(3, l.e[0].vcpu_id);
	EXPECT_EQ(getpid(), l.e[0].pid);
	EXPECT_NE(0, l.e[0].vm_id);
	EXPECT_EQ(0, l.e[0].flags) TH_LOG("no CPUID set: VT-x not exposed");
	EXPECT_EQ(NVMX_ENTRY_OK, l.e[0].last_failure.kind);
	memset(&f, 0xa5, sizeof(f));
	ASSERT_EQ(0, ioctl(vcpu, NVMX_GET_ENTRY_FAILURE, &f));
	EXPECT_EQ(NVMX_ENTRY_OK, f.kind);
	EXPECT_EQ(0, f.section[0]);
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_VCPU_LIST, NULL));
	EXPECT_EQ(EFAULT, errno);
	close(vcpu);
	close(vm);
	l.h.nent = 2;
	ASSERT_EQ(0, ioctl(self->fd, NVMX_GET_VCPU_LIST, &l));
	EXPECT_EQ(0, l.h.nent) TH_LOG("closing the vCPU takes it off the list");
}

/*
 * Another user sees only its own vCPUs (their PIDs and L1 state are the owner's); an admin
 * (CAP_SYS_ADMIN, nvmx-status run as root) sees every vCPU.
 */
TEST_F(dev, vcpu_list_shows_other_users_nothing)
{
	struct vcpu_list2 l = { .h.nent = 2 };
	int vm, vcpu, status;
	pid_t child;

	vm = ioctl(self->fd, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu);
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0) {
		/* Keep /dev/nvmx open, become an ordinary user (no capabilities left). */
		struct vcpu_list2 c = { .h.nent = 2 };
		int cvm, cvcpu;

		if (setgid(1000) || setuid(1000))
			_exit(10);
		if (ioctl(self->fd, NVMX_GET_VCPU_LIST, &c) || c.h.nent != 0)
			_exit(11);	/* root's vCPU must not show */
		cvm = ioctl(self->fd, KVM_CREATE_VM, 0);
		cvcpu = cvm < 0 ? -1 : ioctl(cvm, KVM_CREATE_VCPU, 5);
		if (cvcpu < 0)
			_exit(12);
		c.h.nent = 2;
		if (ioctl(self->fd, NVMX_GET_VCPU_LIST, &c) || c.h.nent != 1 || c.e[0].vcpu_id != 5)
			_exit(13);	/* its own does */
		/* Stay until the admin has looked. */
		pause();
		_exit(0);
	}
	/* The admin sees both, once the child has its vCPU. */
	for (int i = 0; i < 100; i++) {
		l.h.nent = 2;
		ASSERT_EQ(0, ioctl(self->fd, NVMX_GET_VCPU_LIST, &l));
		if (l.h.nent == 2 || waitpid(child, &status, WNOHANG) == child)
			break;
		usleep(50000);
	}
	EXPECT_EQ(2, l.h.nent) TH_LOG("root sees root's and the other user's vCPU");
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	EXPECT_TRUE(WIFSIGNALED(status)) TH_LOG("child exited %d (10 setuid, 11 saw root's vCPU, "
						"12 no vCPU, 13 did not see its own)", WEXITSTATUS(status));
	close(vcpu);
	close(vm);
}

struct list_call {
	int fd;
	void *buf;
	int ret;
};

static void *get_list_thread(void *arg)
{
	struct list_call *c = arg;

	c->ret = ioctl(c->fd, NVMX_GET_VCPU_LIST, c->buf);
	return NULL;
}

struct create_call {
	int vm, ret;
	volatile int done;
};

static void *create_vcpu_thread(void *arg)
{
	struct create_call *c = arg;

	c->ret = ioctl(c->vm, KVM_CREATE_VCPU, 1);
	c->done = 1;
	return NULL;
}

/*
 * NVMX_GET_VCPU_LIST writing into user memory that faults slowly (here: a userfaultfd page
 * nobody fills yet) must not hold the lock that vCPU creation, release and every KVM_RUN
 * return take: another VMM's KVM_CREATE_VCPU completes meanwhile.
 */
TEST_F(dev, vcpu_list_copy_holds_no_lock)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_zeropage zero = { 0 };
	struct list_call l = { .fd = self->fd };
	struct create_call c = { 0 };
	pthread_t lt, ct;
	int uffd, done_early;
	char *two;

	c.vm = ioctl(self->fd, KVM_CREATE_VM, 0);
	ASSERT_LE(0, c.vm);
	ASSERT_LE(0, ioctl(c.vm, KVM_CREATE_VCPU, 0));	/* something to list */
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	/* The list header (nent = 4) ends a normal page; the entries go to a watched one. */
	two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, two);
	*(__u32 *)(two + 4096 - 8) = 4;
	l.buf = two + 4096 - 8;
	reg.range.start = (unsigned long)two + 4096;
	reg.range.len = 4096;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));
	ASSERT_EQ(0, pthread_create(&lt, NULL, get_list_thread, &l));
	usleep(200000);	/* the list ioctl now waits for the page */
	ASSERT_EQ(0, pthread_create(&ct, NULL, create_vcpu_thread, &c));
	for (int i = 0; i < 40 && !c.done; i++)
		usleep(50000);
	done_early = c.done;
	/* Let the copy finish (and, had it held the lock, the creation). */
	zero.range = reg.range;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_ZEROPAGE, &zero));
	pthread_join(lt, NULL);
	pthread_join(ct, NULL);
	EXPECT_TRUE(done_early) TH_LOG("KVM_CREATE_VCPU waited for the list copy into user memory");
	EXPECT_LE(0, c.ret);
	EXPECT_EQ(0, l.ret);
	close(c.ret);
	close(c.vm);
	close(uffd);
}

TEST_F(dev, host_status_straddling_unmapped_page_is_efault)
{
	/* The struct straddles the end of a mapping: the copy cannot complete, EFAULT. */
	long page = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct nvmx_host_status *st;

	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, munmap(map + page, page));
	st = (struct nvmx_host_status *)(map + page - 16);
	memset(map + page - 16, 0x5a, 16);
	EXPECT_EQ(-1, ioctl(self->fd, NVMX_GET_HOST_STATUS, st));
	EXPECT_EQ(EFAULT, errno);
	munmap(map, page);
}

TEST_HARNESS_MAIN
