#!/bin/sh
# A right file whose name has characters Submit does not copy (parentheses,
# as a file manager makes for a second copy). A reboot of this machine would
# read it; Submit skips it, and Check says so.
set -e
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > '/etc/sysctl.d/60-kernellab (copy).conf'
sysctl -p '/etc/sysctl.d/60-kernellab (copy).conf'
