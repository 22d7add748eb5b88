// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvmx_bench: the path lengths a hypervisor adds, measured through the KVM ABI so that the
 * same binary runs against kvm_intel (nested=1) and nvmx (`make bench`, scripts/bench.sh).
 * Written with the upstream KVM selftest library; L1's hypervisor is the library's VMX code
 * (lib/x86/vmx.c), L2 runs under L1's EPT.
 *
 * One line per sample on stdout, "@@BENCH <column> <metric> <value>", for
 * scripts/bench_report.py (medians, spreads, ratios):
 *
 *   p1_l1_cpuid_cycles    L1 CPUID exit round trip (cycles per CPUID, guest TSC)
 *   p2_l2_cpuid_cycles    L2 CPUID: L0 exit, reflected to L1, L1 advances RIP (VMREAD x3,
 *                         VMWRITE x1) and VMRESUMEs (cycles per CPUID, L2's TSC)
 *   p4_l1_touch_cycles    first write to a 4 KiB page of L1 memory (per page)
 *   p4_l2_touch_cycles    first write by L2 to a page L1 has touched (per page)
 *   p5_create_cycles      KVM_CREATE_VM -> one slot, one vCPU -> first exit (KVM_EXIT_IO),
 *                         host TSC, from userspace
 *   p5_vm_kib, p5_vcpu_kib  kernel memory per VM and per vCPU (free pages, 16 of each)
 *   p6_vmread_cycles, p6_vmwrite_cycles  one L1 VMREAD / VMWRITE
 *   *_exits               VM exits the host took per unit of the metric above: KVM's
 *                         binary stats ("exits"), nvmx's NVMX_GET_VCPU_STATS
 *   *_vmxon_per_1000_exits  nvmx only: VMXON/VMXOFF pairs per 1,000 exits
 *
 * Bochs' TSC counts instructions: the cycles are path lengths, comparable between the two
 * hypervisors in the same boot, not times.
 *
 * Usage: nvmx_bench -c COLUMN [-i ITERATIONS] [-r REPEATS] [-p PAGES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/nvmx.h>

#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"

#define DATA_GVA	0x10000000ul
/* The first-touch pages: a slot of their own, identity-mapped by L1's EPT for L2. */
#define DATA_GPA	0x10000000ul
#define DATA_SLOT	1
#define MAX_REPEATS	64

enum stage { P1 = 1, P4_L1, P6_VMREAD, P6_VMWRITE, P2, P4_L2 };
enum l2_cmd { L2_CPUID, L2_TOUCH };

/* Set by main() before the guest runs. */
static u64 iterations, repeats, pages;
/* L1 -> L2 (they share memory: L2 runs on L1's page tables under an identity EPT). */
static volatile u64 l2_cmd, l2_base, l2_cycles;

static inline u64 tsc(void)
{
	u32 lo, hi;

	__asm__ __volatile__("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) :: "memory");
	return ((u64)hi << 32) | lo;
}

static inline void guest_cpuid(void)
{
	u32 a = 0, b, c = 0, d;

	__asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) :: "memory");
}

static void touch(u64 base, u64 n)
{
	for (u64 p = 0; p < n; p++)
		*(volatile u64 *)(base + p * PAGE_SIZE) = p;
}

static u64 region(u64 r)
{
	return DATA_GVA + r * pages * PAGE_SIZE;
}

static void l2_code(void)
{
	for (;;) {
		u64 t0 = tsc();

		if (l2_cmd == L2_CPUID)
			for (u64 i = 0; i < iterations; i++)
				guest_cpuid();
		else
			touch(l2_base, pages);
		l2_cycles = tsc() - t0;
		vmcall();
	}
}

/* Run L2 until its VMCALL, doing for its CPUID exits what an L1 hypervisor does. */
static void run_l2(bool *launched)
{
	GUEST_ASSERT(*launched ? !vmresume() : !vmlaunch());
	*launched = true;
	for (;;) {
		u64 reason = vmreadz(VM_EXIT_REASON);

		GUEST_ASSERT(reason == EXIT_REASON_CPUID || reason == EXIT_REASON_VMCALL);
		vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
		if (reason == EXIT_REASON_VMCALL)
			return;
		GUEST_ASSERT(!vmresume());
	}
}

static void l1_code(struct vmx_pages *vmx)
{
	bool launched = false;
	u64 r, i, t0, rip;

	for (r = 0; r < repeats; r++) {
		t0 = tsc();
		for (i = 0; i < iterations; i++)
			guest_cpuid();
		GUEST_SYNC_ARGS(P1, tsc() - t0, iterations, 0, 0);
	}
	for (r = 0; r < repeats; r++) {
		t0 = tsc();
		touch(region(r), pages);
		GUEST_SYNC_ARGS(P4_L1, tsc() - t0, pages, 0, 0);
	}

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	rip = vmreadz(GUEST_RIP);
	for (r = 0; r < repeats; r++) {
		u64 sum = 0;

		t0 = tsc();
		for (i = 0; i < iterations; i++)
			sum += vmreadz(GUEST_RIP);
		GUEST_SYNC_ARGS(P6_VMREAD, tsc() - t0, iterations, 0, 0);
		GUEST_ASSERT_EQ(sum, rip * iterations);
		t0 = tsc();
		for (i = 0; i < iterations; i++)
			vmwrite(GUEST_RIP, rip);
		GUEST_SYNC_ARGS(P6_VMWRITE, tsc() - t0, iterations, 0, 0);
	}

	for (r = 0; r < repeats; r++) {
		l2_cmd = L2_CPUID;
		run_l2(&launched);
		GUEST_SYNC_ARGS(P2, l2_cycles, iterations, 0, 0);
	}
	for (r = 0; r < repeats; r++) {
		l2_cmd = L2_TOUCH;
		l2_base = region(r);
		run_l2(&launched);
		GUEST_SYNC_ARGS(P4_L2, l2_cycles, pages, 0, 0);
	}
	GUEST_DONE();
}

/* Exit counters of the host hypervisor, whichever it is. */
struct counters {
	u64 exits, vmx_regions;
};

static bool nvmx_stats;

static struct counters counters(struct kvm_vcpu *vcpu)
{
	struct nvmx_vcpu_stats s;

	if (nvmx_stats) {
		TEST_ASSERT(!ioctl(vcpu->fd, NVMX_GET_VCPU_STATS, &s), "NVMX_GET_VCPU_STATS");
		return (struct counters){ s.exits, s.vmx_regions };
	}
	return (struct counters){ vcpu_get_stat(vcpu, exits), 0 };
}

static const char *column;

static void sample(const char *metric, double v)
{
	printf("@@BENCH %s %s %.3f\n", column, metric, v);
}

/*
 * Free memory in KiB, counting the pages in the per-CPU free lists (/proc/zoneinfo "count:"):
 * MemFree alone misses allocations that the per-CPU lists serve.
 */
static long free_kib(void)
{
	char line[160];
	long pages = 0, n;
	FILE *f = fopen("/proc/zoneinfo", "r");

	TEST_ASSERT(f, "/proc/zoneinfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " pages free %ld", &n) == 1 || sscanf(line, " count: %ld", &n) == 1)
			pages += n;
	fclose(f);
	return pages * (PAGE_SIZE / 1024);
}

/*
 * P5: a VM the way a minimal VMM makes one, with raw ioctls: one page of memory holding
 * real-mode code that writes a port, vCPUs run until that exit.
 */
struct tiny_vm {
	int fd;
	void *mem;
	int vcpu[16];
	struct kvm_run *run[16];
	int nr;
};

static const u8 tiny_code[] = {
	0xb0, 0x42,		/* mov al, 0x42 */
	0xe6, 0x10,		/* out 0x10, al */
	0xf4,			/* hlt */
};

static void tiny_vm_create(struct tiny_vm *t, int kvm, int nr_vcpus)
{
	struct kvm_userspace_memory_region slot = { .memory_size = PAGE_SIZE };
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	t->fd = ioctl(kvm, KVM_CREATE_VM, 0);
	TEST_ASSERT(t->fd >= 0, "KVM_CREATE_VM");
	t->mem = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(t->mem != MAP_FAILED, "mmap");
	memcpy(t->mem, tiny_code, sizeof(tiny_code));
	slot.userspace_addr = (u64)t->mem;
	TEST_ASSERT(!ioctl(t->fd, KVM_SET_USER_MEMORY_REGION, &slot), "KVM_SET_USER_MEMORY_REGION");
	t->nr = nr_vcpus;
	for (int i = 0; i < nr_vcpus; i++) {
		struct kvm_sregs sregs;
		struct kvm_regs regs = { .rip = 0, .rflags = 2 };

		t->vcpu[i] = ioctl(t->fd, KVM_CREATE_VCPU, i);
		TEST_ASSERT(t->vcpu[i] >= 0, "KVM_CREATE_VCPU");
		t->run[i] = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->vcpu[i], 0);
		TEST_ASSERT(t->run[i] != MAP_FAILED, "mmap kvm_run");
		TEST_ASSERT(!ioctl(t->vcpu[i], KVM_GET_SREGS, &sregs), "KVM_GET_SREGS");
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		TEST_ASSERT(!ioctl(t->vcpu[i], KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
		TEST_ASSERT(!ioctl(t->vcpu[i], KVM_SET_REGS, &regs), "KVM_SET_REGS");
		TEST_ASSERT(!ioctl(t->vcpu[i], KVM_RUN, 0), "KVM_RUN");
		TEST_ASSERT(t->run[i]->exit_reason == KVM_EXIT_IO && t->run[i]->io.port == 0x10,
			    "first exit: reason %u", t->run[i]->exit_reason);
	}
}

static void tiny_vm_destroy(struct tiny_vm *t)
{
	for (int i = 0; i < t->nr; i++) {
		munmap(t->run[i], ioctl(t->fd, KVM_GET_VCPU_MMAP_SIZE, 0));
		close(t->vcpu[i]);
	}
	munmap(t->mem, PAGE_SIZE);
	close(t->fd);
}

static void bench_create(void)
{
	struct tiny_vm vms[16], one;
	int kvm = open_kvm_dev_path_or_exit();
	long before, a, b;

	for (u64 r = 0; r < repeats; r++) {
		u64 t0 = rdtsc();

		tiny_vm_create(&one, kvm, 1);
		sample("p5_create_cycles", rdtsc() - t0);
		tiny_vm_destroy(&one);
	}
	/* A = VM + vCPU (16 VMs of one vCPU), B = VM + 16 vCPUs; nothing is freed while
	 * measuring (a free the kernel defers, e.g. to RCU, would land in the next sample). */
	for (u64 r = 0; r < repeats; r++) {
		before = free_kib();
		for (int i = 0; i < 16; i++)
			tiny_vm_create(&vms[i], kvm, 1);
		a = before - free_kib();
		before = free_kib();
		tiny_vm_create(&one, kvm, 16);
		b = before - free_kib();
		for (int i = 0; i < 16; i++)
			tiny_vm_destroy(&vms[i]);
		tiny_vm_destroy(&one);
		sample("p5_vcpu_kib", (b - a / 16.0) / 15.0);
		sample("p5_vm_kib", a / 16.0 - (b - a / 16.0) / 15.0);
	}
	close(kvm);
}

static const char *const metric[] = {
	[P1] = "p1_l1_cpuid", [P4_L1] = "p4_l1_touch", [P6_VMREAD] = "p6_vmread",
	[P6_VMWRITE] = "p6_vmwrite", [P2] = "p2_l2_cpuid", [P4_L2] = "p4_l2_touch",
};

static void bench_guest(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct counters c0, c1;
	struct nvmx_vcpu_stats probe;
	gva_t vmx_gva;
	struct ucall uc;
	char name[64];

	vm = __vm_create_with_one_vcpu(&vcpu, repeats * pages, l1_code);
	vm_enable_tdp(vm);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, DATA_SLOT, repeats * pages, 0);
	virt_map(vm, DATA_GVA, DATA_GPA, repeats * pages);
	/* The host pages exist before the guest touches them: the first touch measures the
	 * hypervisor's EPT fault, not the host's page allocation. */
	for (u64 p = 0; p < repeats * pages; p++)
		memset(addr_gpa2hva(vm, DATA_GPA + p * PAGE_SIZE), 0, PAGE_SIZE);
	tdp_identity_map_default_memslots(vm);
	tdp_map(vm, DATA_GPA, DATA_GPA, repeats * pages * PAGE_SIZE);
	sync_global_to_guest(vm, iterations);
	sync_global_to_guest(vm, repeats);
	sync_global_to_guest(vm, pages);
	nvmx_stats = !ioctl(vcpu->fd, NVMX_GET_VCPU_STATS, &probe);

	c0 = counters(vcpu);
	for (;;) {
		double n;

		vcpu_run(vcpu);
		c1 = counters(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			n = uc.args[3];
			sample(strcat(strcpy(name, metric[uc.args[1]]), "_cycles"), uc.args[2] / n);
			/* The ucall's own exit is not the metric's. */
			sample(strcat(strcpy(name, metric[uc.args[1]]), "_exits"),
			       (c1.exits - c0.exits - 1) / n);
			if (nvmx_stats)
				sample(strcat(strcpy(name, metric[uc.args[1]]), "_vmxon_per_1000_exits"),
				       1000.0 * (c1.vmx_regions - c0.vmx_regions) /
				       (c1.exits - c0.exits));
			break;
		case UCALL_DONE:
			kvm_vm_free(vm);
			return;
		default:
			TEST_FAIL("Unknown ucall %lu", uc.cmd);
		}
		/* Counted after this exit's bookkeeping: the next sample starts here. */
		c0 = counters(vcpu);
	}
}

int main(int argc, char *argv[])
{
	int opt;

	iterations = 1000;
	repeats = 7;
	pages = 64;
	while ((opt = getopt(argc, argv, "c:i:r:p:")) != -1) {
		switch (opt) {
		case 'c': column = optarg; break;
		case 'i': iterations = strtoull(optarg, NULL, 0); break;
		case 'r': repeats = strtoull(optarg, NULL, 0); break;
		case 'p': pages = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: %s -c COLUMN [-i ITERATIONS] [-r REPEATS] [-p PAGES]\n", argv[0]);
			return 1;
		}
	}
	TEST_ASSERT(column && iterations && pages && repeats && repeats <= MAX_REPEATS,
		    "usage: -c COLUMN, iterations, pages, 1 <= repeats <= %d", MAX_REPEATS);
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has_ept());
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_guest();
	bench_create();
	printf("@@BENCH %s done 1\n", column);
	return 0;
}
