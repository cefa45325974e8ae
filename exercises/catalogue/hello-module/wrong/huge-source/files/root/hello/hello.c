// SPDX-License-Identifier: GPL-2.0
/*
 * hello.c - reference solution of the hello-module exercise.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

MODULE_LICENSE("GPL");
MODULE_AUTHOR("KernelLab staff");
MODULE_DESCRIPTION("Says hello when loaded and goodbye when unloaded");

static int __init hello_init(void)
{
	pr_info("Hello, KernelLab!\n");
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("Goodbye, KernelLab!\n");
}

module_init(hello_init);
module_exit(hello_exit);
