#!/bin/sh
set -e
make -C /root/hello
