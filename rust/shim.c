// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel facilities nvmx needs that Linux 7.3 exposes to Rust neither as a safe API nor as a
 * binding (they are static inlines or macros). Each wrapper is one call, no logic: the logic
 * stays in Rust (rust/shim.rs declares these and states their contracts).
 */
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/mm.h>
#include <linux/smp.h>
#include <asm/msr.h>

#include "shim.h"

void nvmx_on_each_cpu(void (*func)(void *info), void *info)
{
	on_each_cpu(func, info, 1);
}

unsigned int nvmx_this_cpu(void)
{
	return smp_processor_id();
}

bool nvmx_cpu_online(unsigned int cpu)
{
	return cpu_online(cpu);
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
