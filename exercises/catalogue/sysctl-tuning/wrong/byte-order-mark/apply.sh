#!/bin/sh
# A file saved by an editor that starts it with a UTF-8 byte-order mark.
# systemd-sysctl does not skip the mark: the first key becomes
# "<U+FEFF>vm.swappiness", which does not exist, so the first line is lost at
# boot. It names nothing, so Submit grades it (it fails) rather than refusing.
set -e
printf '\357\273\277vm.swappiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' > /etc/sysctl.d/60-kernellab.conf
sysctl -w vm.swappiness=10 vm.dirty_ratio=15 net.ipv4.ip_forward=1
