#!/bin/sh
# A right file, and 1 MiB of comments that do not compress, next to it.
set -e
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
head -c 786432 /dev/urandom | base64 | sed 's/^/# /' > /etc/sysctl.d/99-notes.conf
sysctl -p /etc/sysctl.d/60-kernellab.conf
