#!/bin/sh
# Print the path of a Python >= 3.12 interpreter, or fail with a clear message.
# pyenv shims (python3.12) fail unless that version is active, so we also look
# inside pyenv's versions directly.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for cand in python3.12 python3.13 python3.14 python3 python; do
  p=$(command -v "$cand" 2>/dev/null) || continue
  if ok "$p"; then "$p" -c 'import sys; print(sys.executable)'; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9]' | sort -V); do
    p="$root/versions/$v/bin/python3"
    if ok "$p"; then echo "$p"; exit 0; fi
  done
fi
echo "find-python: no Python >= 3.12 found; install one or pass PYTHON=/path/to/python3.12" >&2
exit 1
