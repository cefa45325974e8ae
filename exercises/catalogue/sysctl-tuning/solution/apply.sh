#!/bin/sh
# Apply the new file now, without waiting for a reboot.
set -e
sysctl -p /etc/sysctl.d/60-kernellab.conf
