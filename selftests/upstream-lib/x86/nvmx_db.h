/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A guest #DB handler for nvmx's library-based tests: it records what the last #DB left
 * (DR6, the RIP it returns to) and counts them, then clears DR6 as software must (SDM
 * 18.2.3) and TF, so that a single step stops after one instruction.
 */
#ifndef NVMX_DB_H
#define NVMX_DB_H

#include "processor.h"

static volatile u64 db_dr6, db_rip, db_count;

static void db_handler(struct ex_regs *regs)
{
	u64 dr6;

	asm volatile("mov %%dr6, %0" : "=r"(dr6));
	db_dr6 = dr6;
	db_rip = regs->rip;
	db_count++;
	regs->rflags &= ~X86_EFLAGS_TF;
	asm volatile("mov %0, %%dr6" :: "r"(0ul));
}

#endif
