#!/bin/sh
# The good module, built elsewhere and shipped in the sources as good.h (a
# .h file travels to Submit like any source).
set -e
dir=$(mktemp -d)
cat > "$dir/hello.c" <<'SRC'
#include <linux/init.h>
#include <linux/module.h>
MODULE_LICENSE("GPL");
MODULE_AUTHOR("Someone else");
static int __init hello_init(void) { pr_info("Hello, KernelLab!\n"); return 0; }
static void __exit hello_exit(void) { pr_info("Goodbye, KernelLab!\n"); }
module_init(hello_init);
module_exit(hello_exit);
SRC
echo 'obj-m := hello.o' > "$dir/Makefile"
make -C "/lib/modules/$(uname -r)/build" M="$dir" modules
cp "$dir/hello.ko" /root/hello/good.h
rm -rf "$dir"
