#!/bin/sh
# 60-kernellab.conf is a FIFO, not a file. A reader that opens it blocks
# forever (a checker that did would time out); Submit skips it, and Check
# must say that it does not count, without hanging.
set -e
mkfifo /etc/sysctl.d/60-kernellab.conf
sysctl -w vm.swappiness=10 vm.dirty_ratio=15 net.ipv4.ip_forward=1
