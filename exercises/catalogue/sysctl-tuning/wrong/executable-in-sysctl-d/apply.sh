#!/bin/sh
# A set-uid shell script shipped in /etc/sysctl.d that sets two of the values,
# next to a harmless-looking file that sets only the third. The student runs
# the script by hand, so the live values are right; but nothing runs a file of
# /etc/sysctl.d at boot, and Submit copies it as data (0644, no set-id bit):
# in the grading machine two values stay at their defaults.
set -e
cat > /etc/sysctl.d/apply-rest <<'SCRIPT'
#!/bin/sh
/usr/sbin/sysctl -w vm.dirty_ratio=15 net.ipv4.ip_forward=1
SCRIPT
chmod 4755 /etc/sysctl.d/apply-rest
printf 'vm.swappiness = 10\n' > /etc/sysctl.d/60-kernellab.conf
sysctl -p /etc/sysctl.d/60-kernellab.conf
/etc/sysctl.d/apply-rest
