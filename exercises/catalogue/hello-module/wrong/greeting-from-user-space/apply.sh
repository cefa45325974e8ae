#!/bin/sh
# In the student's own guest only (Check; it does not travel to Submit, the
# Makefile does): root wraps insmod and rmmod so that each writes the
# module's line to /dev/kmsg, at info level, right after it has run, i.e.
# inside the window where the checker reads the kernel log.
set -e
mkdir -p /usr/local/lib/kl
ln -sf /bin/kmod /usr/local/lib/kl/insmod
ln -sf /bin/kmod /usr/local/lib/kl/rmmod
for tool in insmod rmmod; do
  case $tool in insmod) line='Hello, KernelLab!' ;; rmmod) line='Goodbye, KernelLab!' ;; esac
  rm -f /usr/sbin/$tool
  cat > /usr/sbin/$tool <<WRAP
#!/bin/sh
/usr/local/lib/kl/$tool "\$@"
status=\$?
printf '<6>hello: $line\n' > /dev/kmsg
exit \$status
WRAP
  chmod 755 /usr/sbin/$tool
done
