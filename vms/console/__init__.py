"""The browser console: one-time tokens, the per-VM hub that bridges a
libvirt console stream to websocket viewers, and session recordings."""
