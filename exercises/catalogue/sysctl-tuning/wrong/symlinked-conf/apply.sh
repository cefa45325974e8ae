#!/bin/sh
# The settings live in /root, and /etc/sysctl.d holds links to them (plus a
# link to a system file, which a checker running as root must not read out).
# A real reboot of this machine would follow the link; Submit copies regular
# files only, so in the grading machine there is nothing to apply, and Check
# says so instead of promising that the values survive.
set -e
mkdir -p /root/sysctl
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /root/sysctl/kernellab.conf
ln -s /root/sysctl/kernellab.conf /etc/sysctl.d/60-kernellab.conf
ln -s /etc/shadow /etc/sysctl.d/10-secrets.conf
sysctl -p /root/sysctl/kernellab.conf
