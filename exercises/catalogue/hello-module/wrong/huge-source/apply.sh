#!/bin/sh
set -e
# 1.5 MiB of comment lines, in a .c file that Submit would collect.
yes '/* padding padding padding padding padding padding padding padding padding */' \
  | head -c 1572864 > /root/hello/table.c
