#!/bin/sh
# A hardening file from a guide, applied after the exercise's file at boot.
# net.ipv4.conf.*.forwarding matches net.ipv4.conf.all.forwarding, which is
# the same kernel variable as net.ipv4.ip_forward: IPv4 forwarding ends up off.
set -e
printf 'vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
cat > /etc/sysctl.d/70-hardening.conf <<'CONF'
net.ipv4.conf.*.accept_redirects = 0
net.ipv4.conf.*.send_redirects = 0
net.ipv4.conf.*.forwarding = 0
CONF
sysctl -p /etc/sysctl.d/60-kernellab.conf
