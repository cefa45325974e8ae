"""The shell scripts the guest agent runs for grading. Every tool is called by
absolute path: a grading guest's PATH is not the student's business, and a
student's own guest (Check) may have anything first on it."""

from __future__ import annotations

SH = "/bin/sh"
GUEST_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

# $1 output cap (bytes), $2 time limit (s), $3 grace (s); the checker bundle
# (a tar.gz, the nonce file inside) on stdin.
# The checker is unpacked into a fresh folder inside /run/kernellab (0700,
# root): a process of another user cannot even list it. Its stdout goes
# through `head -c` (the cap), its stderr through `tail -c` (diagnostics); its
# exit status is written beside them. `timeout` signals its own process group
# only, so `head` survives to pass on what the checker printed after SIGTERM.
CHECKER_RUNNER = r"""
set -u
cap=$1 limit=$2 grace=$3
umask 077
base=/run/kernellab
/usr/bin/mkdir -p "$base" && /usr/bin/chown 0:0 "$base" && /usr/bin/chmod 0700 "$base" \
  || { echo "cannot prepare $base" >&2; exit 90; }
d=$(/usr/bin/mktemp -d "$base/check-XXXXXXXXXX") || { echo "cannot create a folder" >&2; exit 90; }
/usr/bin/tar -xzf - -C "$d" --no-same-owner \
  || { echo "cannot unpack" >&2; /usr/bin/rm -rf "$d"; exit 91; }
cd "$d" || exit 92
{ { /usr/bin/timeout -s TERM -k "$grace" "$limit" /usr/bin/python3 -E -s check.py 2>&1 1>&3 3>&-
    echo $? > "$d/.status"; } | /usr/bin/tail -c 4000 >&2; } 3>&1 | /usr/bin/head -c "$cap"
status=$(/usr/bin/cat "$d/.status" 2>/dev/null || echo 255)
cd / && /usr/bin/rm -rf "$d"
echo "kernellab-checker-status=$status" >&2
"""

# $1 the archive to write; then pairs: a declared path (relative to /) and its
# file-name patterns (space-separated). Folders, and the files whose names
# match, are archived as they are (links as links: the host skips them). On
# stdout: the bytes of the regular files found, for a "too large" message.
# The student is root in this guest: everything this prints is checked again
# on the host.
ARTIFACT_COLLECTOR = r"""
set -eu
set -f
out=$1; shift
list=$(/usr/bin/mktemp)
cd /
while [ $# -ge 2 ]; do
  path=$1 patterns=$2; shift 2
  [ -e "$path" ] || [ -L "$path" ] || continue
  names=""
  for p in $patterns; do names="$names -o -name $p"; done
  /usr/bin/find "$path" \( -type d $names \) -print0 >> "$list"
done
/usr/bin/tar --null --no-recursion -czf "$out" -T "$list" 2>/dev/null || true
/usr/bin/tr '\0' '\n' < "$list" | while IFS= read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] && /usr/bin/stat -c %s -- "$f"
done | /usr/bin/awk '{ s += $1 } END { print s + 0 }'
/usr/bin/rm -f "$list"
"""

# $1 the clean archive (host-made, copied in as a file), then the declared
# paths: unpacked into a staging folder, then each declared path replaces
# what the clean guest had there.
ARTIFACT_INSTALLER = r"""
set -eu
umask 022
archive=$1; shift
staging=/run/kernellab-artifacts
/usr/bin/rm -rf "$staging" && /usr/bin/mkdir -m 0700 "$staging"
/usr/bin/tar -xzf "$archive" -C "$staging" --no-same-owner
/usr/bin/rm -f "$archive"
for path in "$@"; do
  if [ -e "$staging/$path" ]; then
    /usr/bin/rm -rf "/$path"
    /usr/bin/mkdir -p "$(/usr/bin/dirname "/$path")"
    /usr/bin/cp -a "$staging/$path" "/$path"
  fi
done
/usr/bin/rm -rf "$staging"
"""

STARTER_INSTALLER = r"""
set -eu
/usr/bin/tar -xzf - -C /root --no-same-owner
"""
