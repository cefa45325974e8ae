#!/bin/sh
# Appends the settings to /etc/sysctl.conf, with a typo in one key. `sysctl -p`
# complains about it, so the student fixes the live value by hand, but not the file.
printf '\n# exercise\nvm.swapiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_forward = 1\n' >> /etc/sysctl.conf
sysctl -p || true
sysctl -w vm.swappiness=10
