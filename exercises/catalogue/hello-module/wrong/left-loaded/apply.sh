#!/bin/sh
set -e
make -C /root/hello
insmod /root/hello/hello.ko
