#!/bin/sh
set -e
mkdir -p /root/hello/gen
for i in $(seq 80); do echo "#define KL_$i $i" > "/root/hello/gen/h$i.h"; done
