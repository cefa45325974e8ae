#!/bin/sh
# A file of its own in /etc/sysctl.d, with vm.swappiness misspelt. `sysctl -p`
# complains, so the student fixes the live value by hand, but not the file.
printf 'vm.swapiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
sysctl -p /etc/sysctl.d/60-kernellab.conf || true
sysctl -w vm.swappiness=10
