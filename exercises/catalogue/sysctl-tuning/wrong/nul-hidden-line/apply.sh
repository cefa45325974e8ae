#!/bin/sh
# A NUL byte in the middle of a line: a reader that splits lines at '\n' only
# sees `vm.swappiness = 10<NUL>kernel.modprobe = ...` as one line setting
# vm.swappiness, but systemd-sysctl starts a new line after the NUL and sets
# kernel.modprobe too.
set -e
printf '#!/bin/sh\ntouch /run/owned\n' > /etc/sysctl.d/helper
chmod 755 /etc/sysctl.d/helper
printf 'vm.swappiness = 10\000kernel.modprobe = /etc/sysctl.d/helper\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
sysctl -w vm.swappiness=10 vm.dirty_ratio=15 net.ipv4.ip_forward=1
