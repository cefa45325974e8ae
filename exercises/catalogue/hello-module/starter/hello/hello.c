// SPDX-License-Identifier: GPL-2.0
/*
 * hello.c - your first loadable kernel module.
 *
 * Fill in the three TODOs, then build with `make` in this folder.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

/*
 * TODO 1: declare the module's licence (a GPL-compatible one) and its
 * author (you), with the MODULE_* macros from <linux/module.h>.
 */

static int __init hello_init(void)
{
	/* TODO 2: log "Hello, KernelLab!" to the kernel log at info level. */
	return 0;
}

static void __exit hello_exit(void)
{
	/* TODO 3: log "Goodbye, KernelLab!" to the kernel log at info level. */
}

module_init(hello_init);
module_exit(hello_exit);
