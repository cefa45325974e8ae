#!/bin/sh
set -e
# The reference solution, followed by 96 KiB of comment lines.
yes '// padding padding padding padding padding padding padding padding padding' \
  | head -c 98304 >> /root/bpftrace/openat_count.bt
