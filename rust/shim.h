/* SPDX-License-Identifier: GPL-2.0 */
/* The C shim's interface; rust/shim.rs declares the same functions for Rust. */
#ifndef NVMX_SHIM_H
#define NVMX_SHIM_H

#include <linux/types.h>

struct page;

void nvmx_on_each_cpu(void (*func)(void *info), void *info);
unsigned int nvmx_this_cpu(void);
bool nvmx_cpu_online(unsigned int cpu);
unsigned int nvmx_num_online_cpus(void);
void nvmx_cpus_read_lock(void);
void nvmx_cpus_read_unlock(void);
u64 nvmx_page_to_phys(struct page *page);
int nvmx_rdmsr_safe(u32 msr, u64 *val);

#endif /* NVMX_SHIM_H */
