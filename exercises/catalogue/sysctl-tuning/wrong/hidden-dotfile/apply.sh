#!/bin/sh
# A file whose name starts with a dot: systemd-sysctl skips hidden names.
set -e
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/.kernellab.conf
sysctl -p /etc/sysctl.d/.kernellab.conf
