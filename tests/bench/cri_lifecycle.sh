#!/usr/bin/env bash
# CRI pod lifecycle benchmark: gvshim vs containerd's runc shim driving runsc vs plain runc (see cri_lifecycle.py).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/cri_lifecycle.py" "$@"
