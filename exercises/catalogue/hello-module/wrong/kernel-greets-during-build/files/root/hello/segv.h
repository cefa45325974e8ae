# Python, run by the Makefile: rename this process "hello kernellab" (the
# kernel's 15 characters) and dereference NULL, so that the kernel logs
# "hello kernellab[pid]: segfault at 0 ..." at info level.
import ctypes

ctypes.CDLL(None).prctl(15, b"hello kernellab", 0, 0, 0)  # PR_SET_NAME
ctypes.string_at(0)
