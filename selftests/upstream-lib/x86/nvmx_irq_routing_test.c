// SPDX-License-Identifier: GPL-2.0-only
/*
 * The split irqchip as QEMU drives it (microvm, kernel-irqchip=split): the I/O APIC is the
 * VMM's, which gives each pin an MSI route with KVM_SET_GSI_ROUTING and raises pins with
 * KVM_IRQ_LINE; a level-triggered pin's EOI comes back to it as KVM_EXIT_IOAPIC_EOI.
 * KVM's refusals for a routing table (virt/kvm/irqchip.c) are checked too. Written with the
 * upstream KVM selftest library, with the split irqchip on kvm_intel and nvmx alike
 * (nvmx_split_irqchip.h).
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"
#include "apic.h"
#include "nvmx_split_irqchip.h"

#define EDGE_GSI	5
#define LEVEL_GSI	7
#define EDGE_VECTOR	0x50
#define LEVEL_VECTOR	0x51
#define MSI_LEVEL	(1u << 15)
#define MSI_ASSERT	(1u << 14)

static volatile int edge_count, level_count;

static void edge_handler(struct ex_regs *regs)
{
	edge_count++;
	x2apic_write_reg(APIC_EOI, 0);
}

static void level_handler(struct ex_regs *regs)
{
	level_count++;
	x2apic_write_reg(APIC_EOI, 0);
}

/* Wait for an interrupt with exits (CPUID) rather than a spin the host cannot see. */
static void wait_for(volatile int *count, int n)
{
	while (*count < n)
		this_cpu_has(X86_FEATURE_X2APIC);
}

static void guest_code(void)
{
	x2apic_enable();
	asm volatile("sti");
	GUEST_SYNC(1);
	wait_for(&edge_count, 1);
	GUEST_SYNC(2);
	wait_for(&level_count, 1);
	GUEST_SYNC(3);
	GUEST_ASSERT_EQ(edge_count, 1);
	GUEST_DONE();
}

struct table {
	struct kvm_irq_routing hdr;
	struct kvm_irq_routing_entry e[3];
};

static struct kvm_irq_routing_entry msi_route(__u32 gsi, __u32 data)
{
	struct kvm_irq_routing_entry e = { .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI };

	e.u.msi.address_lo = 0xfee00000;	/* APIC ID 0, physical */
	e.u.msi.data = data;
	return e;
}

static void expect_einval(struct kvm_vm *vm, struct table *t, const char *what)
{
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_GSI_ROUTING, &t->hdr) == -1 && errno == EINVAL, "%s: EINVAL", what);
}

static void test_refusals(struct kvm_vm *vm)
{
	struct table t = { .hdr.nr = 1 };

	t.e[0] = msi_route(1, 0x30);
	t.e[0].type = KVM_IRQ_ROUTING_IRQCHIP;
	t.e[0].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
	t.e[0].u.irqchip.pin = 1;
	expect_einval(vm, &t, "an I/O APIC route with the split irqchip");
	t.e[0] = msi_route(1, 0x30);
	t.e[0].flags = 2;
	expect_einval(vm, &t, "an MSI route with an unknown flag");
	t.e[0] = msi_route(KVM_MAX_IRQ_ROUTES, 0x30);
	expect_einval(vm, &t, "GSI 4096");
	t.hdr.nr = 2;
	t.e[0] = msi_route(3, 0x30);
	t.e[1] = msi_route(3, 0x31);
	expect_einval(vm, &t, "two MSI routes for one GSI");
	t.hdr.nr = KVM_MAX_IRQ_ROUTES + 1;
	expect_einval(vm, &t, "4097 entries");
	t.hdr.nr = 1;
	t.hdr.flags = 1;
	expect_einval(vm, &t, "flags");
	t.hdr.flags = 0;
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_GSI_ROUTING, (struct kvm_irq_routing *)8) == -1 && errno == EFAULT,
		    "a bad pointer: EFAULT");
}

static void irq_line(struct kvm_vm *vm, __u32 irq, __u32 level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	vm_ioctl(vm, KVM_IRQ_LINE, &l);
}

int main(void)
{
	struct table t = { .hdr.nr = 3 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	TEST_ASSERT(kvm_check_cap(KVM_CAP_IRQ_ROUTING) > 24, "routes for the 24 I/O APIC pins and more");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, EDGE_VECTOR, edge_handler);
	vm_install_exception_handler(vm, LEVEL_VECTOR, level_handler);

	test_refusals(vm);
	pr_info("KVM_SET_GSI_ROUTING refusals passed\n");
	t.e[0] = msi_route(EDGE_GSI, EDGE_VECTOR);
	t.e[1] = msi_route(LEVEL_GSI, MSI_LEVEL | MSI_ASSERT | LEVEL_VECTOR);
	t.e[2] = msi_route(40, 0x60);	/* beyond the pins: a device's MSI */
	vm_ioctl(vm, KVM_SET_GSI_ROUTING, &t.hdr);

	nvmx_run_to_stage(vcpu, 1);
	/* Lowered lines and GSIs without a route deliver nothing. */
	irq_line(vm, EDGE_GSI, 0);
	irq_line(vm, 20, 1);
	irq_line(vm, 20, 0);
	irq_line(vm, EDGE_GSI, 1);
	irq_line(vm, EDGE_GSI, 0);
	nvmx_run_to_stage(vcpu, 2);
	pr_info("KVM_IRQ_LINE of an edge-triggered route passed\n");

	irq_line(vm, LEVEL_GSI, 1);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IOAPIC_EOI);
	TEST_ASSERT_EQ(vcpu->run->eoi.vector, LEVEL_VECTOR);
	irq_line(vm, LEVEL_GSI, 0);
	pr_info("KVM_EXIT_IOAPIC_EOI of a level-triggered route passed\n");
	nvmx_run_to_stage(vcpu, 3);
	nvmx_run_to_stage(vcpu, 0);
	kvm_vm_free(vm);
	return 0;
}
