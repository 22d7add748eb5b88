// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_RUN on /dev/nvmx with small real-mode guests (unrestricted guest): I/O exits in both
 * directions, HLT, CPUID, triple fault, invalid guest state, an access outside every slot,
 * immediate_exit and a signal interrupting a spinning guest.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "nvmx_guest.h"

/* The 32-bit value of the guest's last OUT (KVM_EXIT_IO). */
static __u32 io_u32(struct guest *g)
{
	return *(__u32 *)((char *)g->run + g->run->io.data_offset);
}

/* A guest that reports CPUID.1:ECX: mov eax,1; cpuid; mov eax,ecx; mov dx,0x1000;
 * out dx,eax; hlt */
static const unsigned char cpuid1_code[] = { 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2,
					     0x66, 0x89, 0xc8, 0xba, 0x00, 0x10, 0x66, 0xef,
					     0xf4 };

static const char *exit_name(__u32 r)
{
	static char buf[32];

	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTR: return "INTR";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	}
	snprintf(buf, sizeof(buf), "%u", r);
	return buf;
}

#define ASSERT_EXIT(g, reason)							\
	ASSERT_EQ(reason, (g)->run->exit_reason)				\
		TH_LOG("exit %s (internal suberror %u data %llx %llx %llx)",	\
		       exit_name((g)->run->exit_reason),			\
		       (g)->run->internal.suberror,				\
		       (unsigned long long)(g)->run->internal.data[0],		\
		       (unsigned long long)(g)->run->internal.data[1],		\
		       (unsigned long long)(g)->run->internal.data[2])

TEST(out_in_hlt)
{
	/* mov dx,0x1000; mov al,'A'; out dx,al; in al,dx; mov bl,al; hlt */
	static const unsigned char code[] = { 0xba, 0x00, 0x10, 0xb0, 0x41, 0xee, 0xec,
					      0x88, 0xc3, 0xf4 };
	struct guest g;
	struct kvm_regs regs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code))) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0)) TH_LOG("%s", strerror(errno));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(KVM_EXIT_IO_OUT, g.run->io.direction);
	EXPECT_EQ(1, g.run->io.size);
	EXPECT_EQ(0x1000, g.run->io.port);
	EXPECT_EQ(1, g.run->io.count);
	EXPECT_EQ('A', *((char *)g.run + g.run->io.data_offset));

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(KVM_EXIT_IO_IN, g.run->io.direction);
	*((unsigned char *)g.run + g.run->io.data_offset) = 0x5a;

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0x5a, regs.rbx & 0xff) TH_LOG("the IN data reached the guest");
	EXPECT_EQ(0x5a, regs.rax & 0xff) TH_LOG("AL holds the IN result");
	EXPECT_EQ(CODE_GPA + sizeof(code), regs.rip) TH_LOG("RIP after HLT");
	guest_destroy(&g);
}

TEST(cpuid_hides_vmx_and_shows_a_hypervisor)
{
	struct guest g;
	__u32 ecx;

	ASSERT_EQ(0, guest_create(&g, cpuid1_code, sizeof(cpuid1_code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(4, g.run->io.size);
	ecx = io_u32(&g);
	EXPECT_EQ(0, ecx & (1U << 5)) TH_LOG("VMX is not offered to this guest");
	EXPECT_NE(0, ecx & (1U << 31)) TH_LOG("hypervisor bit");
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	guest_destroy(&g);
}

/*
 * A VMM can hide the hypervisor from its guest (VMware's hypervisor.cpuid.v0 = FALSE): it
 * clears CPUID.1:ECX[31] and leaves out the 0x4000_00xx leaves in KVM_SET_CPUID2. The same
 * guest first runs with the supported table (hypervisor bit, nvmx's signature at 0x40000000),
 * then with the hidden one.
 */
TEST(cpuid_hides_the_hypervisor_when_the_vmm_asks)
{
	/* mov eax,1; cpuid; mov eax,ecx; mov dx,0x1000; out dx,eax;
	 * mov eax,0x40000000; cpuid; mov eax,ebx; mov dx,0x1000; out dx,eax; hlt */
	static const unsigned char code[] = { 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2,
					      0x66, 0x89, 0xc8, 0xba, 0x00, 0x10, 0x66, 0xef,
					      0x66, 0xb8, 0x00, 0x00, 0x00, 0x40, 0x0f, 0xa2,
					      0x66, 0x89, 0xd8, 0xba, 0x00, 0x10, 0x66, 0xef,
					      0xf4 };
	const __u32 signature = 0x786d766e; /* "nvmx" */

	for (int hide = 0; hide <= 1; hide++) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
		struct guest g;
		__u32 n = 0, ecx, ebx;

		ASSERT_NE(NULL, c);
		ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
		c->nent = 256;
		ASSERT_EQ(0, ioctl(g.sys, KVM_GET_SUPPORTED_CPUID, c));
		for (__u32 i = 0; i < c->nent; i++) {
			struct kvm_cpuid_entry2 e = c->entries[i];

			if (e.function == 1)
				e.ecx &= ~(1U << 5);
			if (hide && e.function == 1)
				e.ecx &= ~(1U << 31);
			if (hide && e.function >= 0x40000000 && e.function <= 0x4fffffff)
				continue;
			c->entries[n++] = e;
		}
		c->nent = n;
		ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_CPUID2, c));
		ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
		ASSERT_EXIT(&g, KVM_EXIT_IO);
		ecx = io_u32(&g);
		ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
		ASSERT_EXIT(&g, KVM_EXIT_IO);
		ebx = io_u32(&g);
		if (hide) {
			EXPECT_EQ(0, ecx & (1U << 31)) TH_LOG("hidden: no hypervisor bit");
			EXPECT_NE(signature, ebx) TH_LOG("hidden: no hypervisor leaves");
		} else {
			EXPECT_NE(0, ecx & (1U << 31)) TH_LOG("the supported table has the hypervisor bit");
			EXPECT_EQ(signature, ebx) TH_LOG("and nvmx's signature at 0x40000000");
		}
		ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
		ASSERT_EXIT(&g, KVM_EXIT_HLT);
		guest_destroy(&g);
		free(c);
	}
}

TEST(cpuid_shows_vmx_when_the_vmm_asks)
{
	struct guest g;
	__u32 ecx;

	ASSERT_EQ(0, guest_create(&g, cpuid1_code, sizeof(cpuid1_code)));
	ASSERT_EQ(0, set_supported_cpuid(g.sys, g.vcpu, 1)) TH_LOG("nested=1 offers VMX");
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	ecx = io_u32(&g);
	EXPECT_NE(0, ecx & (1U << 5)) TH_LOG("VMX is offered to this guest");
	/* Nested cannot be switched off (or on) once the VM has run. */
	EXPECT_EQ(-1, set_supported_cpuid(g.sys, g.vcpu, 0));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0, set_supported_cpuid(g.sys, g.vcpu, 1)) TH_LOG("the same table is fine");
	guest_destroy(&g);
}

TEST(triple_fault_is_shutdown)
{
	/* int3 with an IDT limit of 0: #GP, #DF, triple fault. */
	static const unsigned char code[] = { 0xcc };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.idt.limit = 0;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_SHUTDOWN);
	guest_destroy(&g);
}

TEST(invalid_guest_state_is_fail_entry)
{
	static const unsigned char code[] = { 0xf4 };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.type = 0; /* a read-only data segment cannot be CS (SDM 27.3.1.2) */
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_FAIL_ENTRY);
	EXPECT_EQ(0x80000021ULL, g.run->fail_entry.hardware_entry_failure_reason);
	guest_destroy(&g);
}

TEST(mmio_write_and_read_outside_slots)
{
	/*
	 * DS.base = 0x200000, outside the 64 KiB slot:
	 * mov al,0x5a; mov [0],al; mov bx,[2]; movzx ecx,byte [4];
	 * mov ch,0x77; mov [6],ch; mov dh,[8]; hlt   (CH/DH: bits 15:8 of RCX/RDX)
	 */
	static const unsigned char code[] = { 0xb0, 0x5a, 0xa2, 0x00, 0x00, 0x8b, 0x1e, 0x02, 0x00,
					      0x66, 0x0f, 0xb6, 0x0e, 0x04, 0x00,
					      0xb5, 0x77, 0x88, 0x2e, 0x06, 0x00,
					      0x8a, 0x36, 0x08, 0x00, 0xf4 };
	struct guest g;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.ds.base = 0x200000;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_MMIO);
	EXPECT_EQ(0x200000, g.run->mmio.phys_addr);
	EXPECT_EQ(1, g.run->mmio.is_write);
	EXPECT_EQ(1, g.run->mmio.len);
	EXPECT_EQ(0x5a, g.run->mmio.data[0]);

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_MMIO);
	EXPECT_EQ(0x200002, g.run->mmio.phys_addr);
	EXPECT_EQ(0, g.run->mmio.is_write);
	EXPECT_EQ(2, g.run->mmio.len);
	g.run->mmio.data[0] = 0xef;
	g.run->mmio.data[1] = 0xbe;

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_MMIO);
	EXPECT_EQ(0x200004, g.run->mmio.phys_addr);
	EXPECT_EQ(1, g.run->mmio.len);
	g.run->mmio.data[0] = 0x99;

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_MMIO);
	EXPECT_EQ(0x200006, g.run->mmio.phys_addr);
	EXPECT_EQ(1, g.run->mmio.is_write);
	EXPECT_EQ(0x77, g.run->mmio.data[0]) TH_LOG("CH is bits 15:8 of RCX");

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_MMIO);
	EXPECT_EQ(0x200008, g.run->mmio.phys_addr);
	EXPECT_EQ(0, g.run->mmio.is_write);
	g.run->mmio.data[0] = 0x42;

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0xbeef, regs.rbx & 0xffff) TH_LOG("MOV BX loaded the MMIO data");
	EXPECT_EQ(0x7799, regs.rcx) TH_LOG("MOVZX ECX zero-extended the byte; MOV CH set 15:8");
	EXPECT_EQ(0x42, (regs.rdx >> 8) & 0xff) TH_LOG("MOV DH landed in bits 15:8 of RDX");
	EXPECT_EQ(0, regs.rsi) TH_LOG("not in RSI (register number 6)");
	EXPECT_EQ(CODE_GPA + sizeof(code), regs.rip);
	guest_destroy(&g);
}

TEST(rep_outsb_and_rep_insb)
{
	/*
	 * mov si,0x2000; mov cx,3; mov dx,0x1000; cld; rep outsb;
	 * mov di,0x2100; mov cx,5; rep insb; hlt
	 */
	static const unsigned char code[] = { 0xbe, 0x00, 0x20, 0xb9, 0x03, 0x00, 0xba, 0x00, 0x10,
					      0xfc, 0xf3, 0x6e, 0xbf, 0x00, 0x21, 0xb9, 0x05, 0x00,
					      0xf3, 0x6c, 0xf4 };
	struct guest g;
	struct kvm_regs regs;
	char *data;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	memcpy(g.mem + 0x2000, "abc", 3);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	data = (char *)g.run + g.run->io.data_offset;
	EXPECT_EQ(KVM_EXIT_IO_OUT, g.run->io.direction);
	EXPECT_EQ(3, g.run->io.count);
	EXPECT_EQ(1, g.run->io.size);
	EXPECT_EQ(0, memcmp(data, "abc", 3));

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(KVM_EXIT_IO_IN, g.run->io.direction);
	EXPECT_EQ(5, g.run->io.count);
	memcpy((char *)g.run + g.run->io.data_offset, "VWXYZ", 5);

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	EXPECT_EQ(0, memcmp(g.mem + 0x2100, "VWXYZ", 5));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0x2003, regs.rsi);
	EXPECT_EQ(0x2105, regs.rdi);
	EXPECT_EQ(0, regs.rcx);
	EXPECT_EQ(CODE_GPA + sizeof(code), regs.rip);
	guest_destroy(&g);
}

/* The dirty-logging guest: mov byte [0x3000],1; mov byte [0x5000],2; OUT 0x1000;
 * mov byte [0x5000],3; hlt */
static const unsigned char dirty_log_code[] = { 0xc6, 0x06, 0x00, 0x30, 0x01, 0xc6, 0x06, 0x00, 0x50,
						0x02, 0xba, 0x00, 0x10, 0xee, 0xc6, 0x06, 0x00, 0x50,
						0x03, 0xf4 };

TEST(dirty_log)
{
	struct kvm_userspace_memory_region2 r = { .flags = KVM_MEM_LOG_DIRTY_PAGES,
						  .memory_size = 16 * PAGE };
	__u64 bitmap = ~0ULL;
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = &bitmap };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, dirty_log_code, sizeof(dirty_log_code)));
	EXPECT_EQ(-1, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(ENOENT, errno) TH_LOG("the slot does not log yet");
	r.userspace_addr = (unsigned long)g.mem;
	ASSERT_EQ(0, ioctl(g.vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(0, bitmap) TH_LOG("nothing written since logging started");

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ((1ULL << 3) | (1ULL << 5), bitmap) TH_LOG("pages 3 and 5, not the code page");
	EXPECT_EQ(2, g.mem[0x5000]);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(0, bitmap) TH_LOG("harvested: clean again");

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(1ULL << 5, bitmap) TH_LOG("the write after the harvest was caught");
	EXPECT_EQ(3, g.mem[0x5000]);

	r.flags = 0;
	ASSERT_EQ(0, ioctl(g.vm, KVM_SET_USER_MEMORY_REGION2, &r));
	EXPECT_EQ(-1, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(ENOENT, errno) TH_LOG("logging stopped");
	guest_destroy(&g);
}

TEST(dirty_log_manual_protect)
{
	struct kvm_userspace_memory_region2 r = { .flags = KVM_MEM_LOG_DIRTY_PAGES,
						  .memory_size = 16 * PAGE };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	__u64 bitmap = ~0ULL, clear;
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = &bitmap };
	struct kvm_clear_dirty_log cl = { .slot = 0, .num_pages = 16, .dirty_bitmap = &clear };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, dirty_log_code, sizeof(dirty_log_code)));
	EXPECT_EQ(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET,
		  ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2));
	cap.args[0] = 4;
	EXPECT_EQ(-1, ioctl(g.vm, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("unknown flag");
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	ASSERT_EQ(0, ioctl(g.vm, KVM_ENABLE_CAP, &cap));
	r.userspace_addr = (unsigned long)g.mem;
	ASSERT_EQ(0, ioctl(g.vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("%s", strerror(errno));

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ((1ULL << 3) | (1ULL << 5), bitmap);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ((1ULL << 3) | (1ULL << 5), bitmap) TH_LOG("reading does not clear");

	cl.first_page = 1;
	EXPECT_EQ(-1, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	EXPECT_EQ(EINVAL, errno) TH_LOG("first page not a multiple of 64");
	cl.first_page = 0;
	cl.num_pages = 8;
	EXPECT_EQ(-1, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	EXPECT_EQ(EINVAL, errno) TH_LOG("8 pages that do not end the slot");
	cl.num_pages = 17;
	EXPECT_EQ(-1, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	EXPECT_EQ(EINVAL, errno) TH_LOG("past the slot");
	cl.num_pages = 16;
	cl.slot = 7;
	EXPECT_EQ(-1, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	EXPECT_EQ(ENOENT, errno) TH_LOG("no such slot");
	cl.slot = 0;

	clear = 1ULL << 3;
	ASSERT_EQ(0, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(1ULL << 5, bitmap) TH_LOG("page 3 cleared, page 5 not");
	clear = 1ULL << 5;
	ASSERT_EQ(0, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(0, bitmap);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(1ULL << 5, bitmap) TH_LOG("the write after the clear was caught");
	EXPECT_EQ(3, g.mem[0x5000]);
	guest_destroy(&g);

	/* KVM_DIRTY_LOG_INITIALLY_SET: every page starts dirty, nothing protected yet. */
	ASSERT_EQ(0, guest_create(&g, dirty_log_code, sizeof(dirty_log_code)));
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	ASSERT_EQ(0, ioctl(g.vm, KVM_ENABLE_CAP, &cap));
	r.userspace_addr = (unsigned long)g.mem;
	ASSERT_EQ(0, ioctl(g.vm, KVM_SET_USER_MEMORY_REGION2, &r));
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ(0xffffULL, bitmap) TH_LOG("all 16 pages dirty from the start");
	clear = 0xffff;
	ASSERT_EQ(0, ioctl(g.vm, KVM_CLEAR_DIRTY_LOG, &cl));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	ASSERT_EQ(0, ioctl(g.vm, KVM_GET_DIRTY_LOG, &log));
	EXPECT_EQ((1ULL << 3) | (1ULL << 5), bitmap) TH_LOG("only what the guest wrote since");
	guest_destroy(&g);
}

TEST(undecodable_mmio_reports_the_gpa)
{
	/* DS.base = 0x200000: add [0],al (00 06 00 00) is not emulated */
	static const unsigned char code[] = { 0x00, 0x06, 0x00, 0x00, 0xf4 };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.ds.base = 0x200000;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_INTERNAL_ERROR);
	EXPECT_EQ(KVM_INTERNAL_ERROR_EMULATION, g.run->internal.suberror);
	EXPECT_EQ(48, g.run->internal.data[0]) TH_LOG("EPT violation");
	EXPECT_EQ(0x200000, g.run->internal.data[2]) TH_LOG("the guest-physical address");
	EXPECT_EQ(0x0600, g.run->internal.data[3] & 0xffff) TH_LOG("the instruction bytes");
	guest_destroy(&g);
}

TEST(immediate_exit_is_eintr)
{
	static const unsigned char code[] = { 0xf4 };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	g.run->exit_reason = 0x1234;
	g.run->immediate_exit = 1;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_RUN, 0));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(0x1234, g.run->exit_reason) TH_LOG("untouched, as on KVM");
	g.run->immediate_exit = 0;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	guest_destroy(&g);
}

static void on_alarm(int sig)
{
	(void)sig;
}

TEST(signal_interrupts_a_spinning_guest)
{
	/* jmp $ */
	static const unsigned char code[] = { 0xeb, 0xfe };
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval t = { .it_value = { .tv_usec = 200000 } };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, sigaction(SIGALRM, &sa, NULL));
	ASSERT_EQ(0, setitimer(ITIMER_REAL, &t, NULL));
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_RUN, 0));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(KVM_EXIT_INTR, g.run->exit_reason);
	guest_destroy(&g);
}

struct spin {
	int vcpu;
	int ret, err;
};

static void *spin_thread(void *arg)
{
	struct spin *s = arg;

	s->ret = ioctl(s->vcpu, KVM_RUN, 0);
	s->err = errno;
	return NULL;
}

/* A guest spinning (jmp $) in KVM_RUN on thread `t`, which SIGUSR1 interrupts. */
static int start_spinning(struct guest *g, struct spin *s, pthread_t *t)
{
	static const unsigned char code[] = { 0xeb, 0xfe };
	struct sigaction sa = { .sa_handler = on_alarm };

	if (guest_create(g, code, sizeof(code)) || sigaction(SIGUSR1, &sa, NULL))
		return -1;
	s->vcpu = g->vcpu;
	if (pthread_create(t, NULL, spin_thread, s))
		return -1;
	usleep(100000);	/* in KVM_RUN by now */
	return 0;
}

static void stop_spinning(pthread_t t)
{
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
}

TEST(close_vm_while_vcpu_runs)
{
	struct guest g;
	struct spin s;
	pthread_t t;

	ASSERT_EQ(0, start_spinning(&g, &s, &t));
	/* The running vCPU holds the VM: closing its fd and the memory mapping is safe. */
	close(g.vm);
	munmap(g.mem, 16 * PAGE);
	usleep(100000);
	stop_spinning(t);
	EXPECT_EQ(-1, s.ret);
	EXPECT_EQ(EINTR, s.err);
	munmap(g.run, 2 * PAGE);
	close(g.vcpu);
	close(g.sys);
}

/*
 * A task waiting for a vCPU that another task runs (KVM_RUN holds the vCPU while its guest
 * spins) can be killed at once, as with KVM's mutex_lock_killable: it is not stuck in an
 * uninterruptible wait for as long as the other task's guest runs.
 */
TEST(vcpu_ioctl_waiting_for_a_running_vcpu_is_killable)
{
	struct kvm_regs regs;
	struct guest g;
	struct spin s;
	int status, reaped = 0;
	pthread_t t;
	pid_t child;

	ASSERT_EQ(0, start_spinning(&g, &s, &t));
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0)
		_exit(ioctl(g.vcpu, KVM_GET_REGS, &regs) ? 1 : 0);	/* waits for the vCPU */
	usleep(200000);
	kill(child, SIGKILL);
	for (int i = 0; i < 40 && !reaped; i++) {
		reaped = waitpid(child, &status, WNOHANG) == child;
		if (!reaped)
			usleep(50000);
	}
	stop_spinning(t);
	if (!reaped)
		waitpid(child, &status, 0);
	EXPECT_TRUE(reaped) TH_LOG("the waiting task outlived SIGKILL by 2 s");
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	EXPECT_EQ(-1, s.ret);
	EXPECT_EQ(EINTR, s.err);
	guest_destroy(&g);
}

/* Point real-mode IVT entry `vector` at a handler that reports the vector on port 0x1000. */
static void set_reporting_handler(struct guest *g, int vector, unsigned int handler)
{
	const unsigned char code[] = { 0xba, 0x00, 0x10, 0xb0, (unsigned char)vector, 0xee, 0xf4 };
	unsigned short *ivt = (unsigned short *)g->mem;

	memcpy(g->mem + handler, code, sizeof(code));
	ivt[vector * 2] = handler;	/* offset */
	ivt[vector * 2 + 1] = 0;	/* segment */
}

/*
 * Run `code` in a fresh guest whose handler for `vector` reports it on port 0x1000: the
 * vector the first exit reports, -1 if the guest cannot be made or exits otherwise.
 */
static int vector_delivered(const unsigned char *code, size_t len, int vector)
{
	struct guest g;
	int got = -1;

	if (guest_create(&g, code, len))
		return -1;
	set_reporting_handler(&g, vector, 0x3000);
	if (!ioctl(g.vcpu, KVM_RUN, 0) && g.run->exit_reason == KVM_EXIT_IO && g.run->io.port == 0x1000)
		got = *((unsigned char *)g.run + g.run->io.data_offset);
	guest_destroy(&g);
	return got;
}

TEST(setting_cr4_vmxe_is_gp)
{
	/* mov eax,cr4; or eax,0x2000; mov cr4,eax; hlt */
	static const unsigned char code[] = { 0x0f, 0x20, 0xe0, 0x66, 0x0d, 0x00, 0x20, 0x00,
					      0x00, 0x0f, 0x22, 0xe0, 0xf4 };

	EXPECT_EQ(13, vector_delivered(code, sizeof(code), 13)) TH_LOG("#GP delivered");
}

TEST(rdmsr_of_an_unknown_msr_is_gp)
{
	/* mov ecx,0x12345678; rdmsr; hlt */
	static const unsigned char code[] = { 0x66, 0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x32,
					      0xf4 };

	EXPECT_EQ(13, vector_delivered(code, sizeof(code), 13)) TH_LOG("#GP delivered");
}

/*
 * Give the vCPU the supported CPUID with CPUID.1:ECX bits `ecx1_set` set and `ecx1_clear`
 * cleared, and CPUID.7.0:ECX bits `ecx7_set` set — as a VMM may, whatever
 * KVM_GET_SUPPORTED_CPUID says.
 */
static int edit_cpuid(struct guest *g, __u32 ecx1_set, __u32 ecx1_clear, __u32 ecx7_set)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	int r, has7 = 0;

	if (!c)
		return -1;
	c->nent = 256;
	r = ioctl(g->sys, KVM_GET_SUPPORTED_CPUID, c);
	for (__u32 i = 0; !r && i < c->nent; i++) {
		if (c->entries[i].function == 1)
			c->entries[i].ecx = (c->entries[i].ecx | ecx1_set) & ~ecx1_clear;
		if (c->entries[i].function == 7 && c->entries[i].index == 0) {
			c->entries[i].ecx |= ecx7_set;
			has7 = 1;
		}
	}
	if (!r && !has7)
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){ .function = 7, .ecx = ecx7_set };
	if (!r)
		r = ioctl(g->vcpu, KVM_SET_CPUID2, c);
	free(c);
	return r;
}

/* mov eax,cr4; or eax,BIT; mov cr4,eax; hlt */
#define MOV_CR4_OR(bit) { 0x0f, 0x20, 0xe0, 0x66, 0x0d, (bit) & 0xff, ((bit) >> 8) & 0xff, \
			  ((bit) >> 16) & 0xff, ((bit) >> 24) & 0xff, 0x0f, 0x22, 0xe0, 0xf4 }

/*
 * MOV to CR4 of `bit` is #GP and KVM_SET_SREGS with it EINVAL, for a vCPU whose CPUID is the
 * supported one edited as edit_cpuid says.
 */
static void expect_cr4_bit_refused(struct __test_metadata *_metadata, __u32 bit, __u32 ecx1_set,
				   __u32 ecx1_clear, __u32 ecx7_set)
{
	const unsigned char code[] = MOV_CR4_OR(bit);
	struct kvm_sregs sregs;
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, edit_cpuid(&g, ecx1_set, ecx1_clear, ecx7_set));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.cr4 |= bit;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_SREGS, &sregs)) TH_LOG("KVM_SET_SREGS with CR4 %#x", bit);
	EXPECT_EQ(EINVAL, errno);
	set_reporting_handler(&g, 13, 0x3000);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(13, *((unsigned char *)g.run + g.run->io.data_offset)) TH_LOG("MOV to CR4 of %#x is #GP", bit);
	guest_destroy(&g);
}

/* CR4.OSXSAVE needs XSAVE in the guest's CPUID. */
TEST(setting_cr4_osxsave_without_xsave_is_gp)
{
	expect_cr4_bit_refused(_metadata, 1U << 18, 0, 1U << 26, 0);
}

/*
 * CR4.PKE would give the guest the VMM's PKRU, which nvmx does not switch: refused even when
 * the VMM's CPUID offers PKU.
 */
TEST(pke_stays_off_even_when_the_vmm_offers_it)
{
	expect_cr4_bit_refused(_metadata, 1U << 22, 1U << 26, 0, 1U << 3);
}

TEST(cpuid_without_set_cpuid2_is_empty)
{
	/* mov eax,0; cpuid; mov eax,ebx; mov dx,0x1000; out dx,eax; hlt */
	static const unsigned char code[] = { 0x66, 0x31, 0xc0, 0x0f, 0xa2, 0x66, 0x89, 0xd8,
					      0xba, 0x00, 0x10, 0x66, 0xef, 0xf4 };
	struct kvm_cpuid2 empty = { .nent = 0 };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	/* As on KVM: a vCPU's CPUID is what its VMM set, nothing when it set nothing. */
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_CPUID2, &empty));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(0, io_u32(&g)) TH_LOG("no vendor");
	guest_destroy(&g);
}

TEST(set_cpuid2_after_run_only_unchanged)
{
	static const unsigned char code[] = { 0xf4 };
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	struct guest g;
	__u32 n;

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	c->nent = 256;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_CPUID2, c));
	n = c->nent;
	ASSERT_LT(3, n);
	c->nent = n - 1;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_GET_CPUID2, c));
	EXPECT_EQ(E2BIG, errno);
	EXPECT_EQ(n - 1, c->nent) TH_LOG("nent untouched on failure");
	c->nent = 257;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_CPUID2, c));
	EXPECT_EQ(E2BIG, errno);
	c->nent = n;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	EXPECT_EQ(0, ioctl(g.vcpu, KVM_SET_CPUID2, c)) TH_LOG("the same table after a run");
	c->entries[1].ecx ^= 1;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_CPUID2, c));
	EXPECT_EQ(EINVAL, errno) TH_LOG("a changed table after a run");
	free(c);
	guest_destroy(&g);
}

struct msrs {
	struct kvm_msrs h;
	struct kvm_msr_entry e[4];
};

TEST(msrs_shared_by_guest_and_vmm)
{
	/*
	 * mov ecx,0xc0000082; mov eax,0x80001000; mov edx,0xffffffff; wrmsr   (LSTAR)
	 * mov ecx,0xc0000081; rdmsr; mov dx,0x1000; out dx,eax; hlt            (STAR)
	 */
	static const unsigned char code[] = {
		0x66, 0xb9, 0x82, 0x00, 0x00, 0xc0, 0x66, 0xb8, 0x00, 0x10, 0x00, 0x80,
		0x66, 0xba, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x30,
		0x66, 0xb9, 0x81, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0xba, 0x00, 0x10, 0x66, 0xef, 0xf4 };
	struct msrs m = { .h.nmsrs = 1, .e[0] = { .index = 0xc0000081, .data = 0x0023001000abcdefULL } };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(1, ioctl(g.vcpu, KVM_SET_MSRS, &m)) TH_LOG("STAR");
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(0x00abcdef, io_u32(&g)) TH_LOG("guest RDMSR");

	m = (struct msrs){ .h.nmsrs = 3, .e = { { .index = 0xc0000082 }, { .index = 0x277 },
						 { .index = 0x12345678 } } };
	ASSERT_EQ(2, ioctl(g.vcpu, KVM_GET_MSRS, &m)) TH_LOG("stops at the unknown MSR");
	EXPECT_EQ(0xffffffff80001000ULL, m.e[0].data) TH_LOG("the guest's WRMSR of LSTAR");
	EXPECT_EQ(0x0007040600070406ULL, m.e[1].data) TH_LOG("PAT at power-up");

	m = (struct msrs){ .h.nmsrs = 2, .e = { { .index = 0x277, .data = 6 },
						 { .index = 0xc0000082, .data = 1ULL << 47 } } };
	EXPECT_EQ(1, ioctl(g.vcpu, KVM_SET_MSRS, &m)) TH_LOG("a non-canonical LSTAR is refused");
	m.h.nmsrs = 256;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_MSRS, &m));
	EXPECT_EQ(E2BIG, errno);
	guest_destroy(&g);
}

TEST(msr_index_list)
{
	struct { __u32 n; __u32 idx[64]; } l = { .n = 1 };
	int sys = open("/dev/nvmx", O_RDWR), found = 0;

	ASSERT_LE(0, sys);
	EXPECT_EQ(-1, ioctl(sys, KVM_GET_MSR_INDEX_LIST, &l));
	EXPECT_EQ(E2BIG, errno);
	ASSERT_LT(1, l.n) TH_LOG("the count is written back");
	ASSERT_GE(64, l.n);
	ASSERT_EQ(0, ioctl(sys, KVM_GET_MSR_INDEX_LIST, &l));
	for (__u32 i = 0; i < l.n; i++)
		found += l.idx[i] == 0xc0000080 || l.idx[i] == 0x10;
	EXPECT_EQ(2, found) TH_LOG("EFER and TSC are listed");
	close(sys);
}

TEST(tsc_khz_and_mp_state)
{
	static const unsigned char code[] = { 0xf4 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_HALTED };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	EXPECT_LT(0, ioctl(g.vm, KVM_GET_TSC_KHZ, 0));
	EXPECT_EQ(ioctl(g.vm, KVM_GET_TSC_KHZ, 0), ioctl(g.vcpu, KVM_GET_TSC_KHZ, 0));
	/* No in-kernel local APIC: only RUNNABLE exists, as on KVM without an irqchip. */
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_MP_STATE, &mp));
	EXPECT_EQ(EINVAL, errno);
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	EXPECT_EQ(0, ioctl(g.vcpu, KVM_SET_MP_STATE, &mp));
	mp.mp_state = 99;
	EXPECT_EQ(0, ioctl(g.vcpu, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ(KVM_MP_STATE_RUNNABLE, mp.mp_state);
	guest_destroy(&g);
}

/* KVM_RUN with the VMM's own XMM5 holding `mine`; returns what XMM5 holds after it. */
static unsigned long long run_keeping_xmm5(int vcpu, unsigned long long mine, long *ret)
{
	unsigned long long after;
	long r;

	asm volatile("movq %[mine], %%xmm5\n\t"
		     "syscall\n\t"
		     "movq %%xmm5, %[after]"
		     : [after] "=r"(after), "=a"(r)
		     : [mine] "r"(mine), "a"((long)SYS_ioctl), "D"((long)vcpu),
		       "S"((long)KVM_RUN), "d"(0L)
		     : "rcx", "r11", "xmm5", "memory");
	*ret = r;
	return after;
}

TEST(fpu_state_is_switched)
{
	/* movd eax,xmm5; mov dx,0x1000; out dx,eax; pxor xmm5,xmm5; hlt */
	static const unsigned char code[] = { 0x66, 0x0f, 0x7e, 0xe8, 0xba, 0x00, 0x10, 0x66, 0xef,
					      0x66, 0x0f, 0xef, 0xed, 0xf4 };
	struct kvm_fpu fpu;
	struct kvm_sregs sregs;
	struct guest g;
	long r;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.cr4 |= 1 << 9; /* OSFXSR: SSE in the guest */
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_FPU, &fpu));
	EXPECT_EQ(0x37f, fpu.fcw);
	EXPECT_EQ(0x1f80, fpu.mxcsr);
	memset(fpu.xmm[5], 0, 16);
	*(__u32 *)fpu.xmm[5] = 0x5eed1234;
	fpu.mxcsr = 0xffffffff;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_SET_FPU, &fpu)) TH_LOG("reserved MXCSR bits");
	EXPECT_EQ(EINVAL, errno);
	fpu.mxcsr = 0x1f80;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_FPU, &fpu));

	EXPECT_EQ(0x1122334455667788ULL, run_keeping_xmm5(g.vcpu, 0x1122334455667788ULL, &r));
	ASSERT_EQ(0, r);
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(0x5eed1234, io_u32(&g)) TH_LOG("guest XMM5");
	EXPECT_EQ(0x99aabbccddeeff00ULL, run_keeping_xmm5(g.vcpu, 0x99aabbccddeeff00ULL, &r))
		TH_LOG("the guest's PXOR did not reach the VMM's XMM5");
	ASSERT_EQ(0, r);
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_FPU, &fpu));
	EXPECT_EQ(0, *(__u32 *)fpu.xmm[5]) TH_LOG("the guest's own XMM5 after PXOR");
	guest_destroy(&g);
}

struct vcpu_thread {
	int vcpu, cpu, port, ret, err;
	struct kvm_run *run;
	unsigned long long rip;
};

static void *vcpu_thread(void *arg)
{
	struct vcpu_thread *t = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	t->ret = sched_setaffinity(0, sizeof(set), &set);
	if (!t->ret)
		t->ret = ioctl(t->vcpu, KVM_RUN, 0);
	t->err = errno;
	t->port = t->run->io.port;
	return NULL;
}

TEST(two_vcpus_on_two_cpus)
{
	/* vCPU n runs "mov dx, 0x1000 + n; out dx, al; hlt" from its own page. */
	static const unsigned char code0[] = { 0xba, 0x00, 0x10, 0xee, 0xf4 };
	static const unsigned char code1[] = { 0xba, 0x01, 0x10, 0xee, 0xf4 };
	struct vcpu_thread t[2];
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x2000, .rflags = 2 };
	pthread_t th[2];
	struct guest g;

	ASSERT_LE(2, sysconf(_SC_NPROCESSORS_ONLN));
	ASSERT_EQ(0, guest_create(&g, code0, sizeof(code0)));
	memcpy(g.mem + 0x2000, code1, sizeof(code1));
	t[0] = (struct vcpu_thread){ .vcpu = g.vcpu, .cpu = 0, .run = g.run };
	t[1] = (struct vcpu_thread){ .vcpu = ioctl(g.vm, KVM_CREATE_VCPU, 1), .cpu = 1 };
	ASSERT_GE(t[1].vcpu, 0);
	t[1].run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, t[1].vcpu, 0);
	ASSERT_NE(MAP_FAILED, t[1].run);
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_SET_REGS, &regs));

	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_create(&th[i], NULL, vcpu_thread, &t[i]));
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, t[i].ret) TH_LOG("vCPU %d: %s", i, strerror(t[i].err));
		EXPECT_EQ(KVM_EXIT_IO, t[i].run->exit_reason) TH_LOG("vCPU %d", i);
		EXPECT_EQ(0x1000 + i, t[i].port) TH_LOG("vCPU %d ran its own code", i);
	}
	for (int i = 0; i < 2; i++) {
		/* Each finishes on the other CPU: vCPUs move freely between runs. */
		t[i].cpu = !i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, vcpu_thread, &t[i]));
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, t[i].ret);
		EXPECT_EQ(KVM_EXIT_HLT, t[i].run->exit_reason) TH_LOG("vCPU %d", i);
	}
	munmap(t[1].run, 2 * PAGE);
	close(t[1].vcpu);
	guest_destroy(&g);
}

TEST_HARNESS_MAIN
