# The hostname in the prompt is read before each prompt, not once at login:
# a guest restored from the warm pool is renamed after its shell has started
# (vms.lifecycle personalises it), and its next prompt shows the new name.
if [ -n "${BASH_VERSION:-}" ] && [ -n "${PS1:-}" ]; then
  PROMPT_COMMAND='read -r HOSTNAME < /proc/sys/kernel/hostname'
  PS1='\u@${HOSTNAME}:\w\$ '
fi
