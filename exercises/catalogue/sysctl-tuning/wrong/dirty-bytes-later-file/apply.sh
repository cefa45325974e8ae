#!/bin/sh
# A right file, and a later one with a writeback tweak found on the web. The
# kernel keeps only one of vm.dirty_ratio and vm.dirty_bytes: writing
# dirty_bytes at boot sets dirty_ratio to 0. The student applied only the
# first file, so the live values look right until a reboot.
set -e
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
printf '# flush earlier on big machines\nvm.dirty_bytes = 268435456\n' > /etc/sysctl.d/70-writeback.conf
sysctl -p /etc/sysctl.d/60-kernellab.conf
