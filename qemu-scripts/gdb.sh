#!/usr/bin/env bash
# Boot an already built kernel stopped at the first instruction, with a gdb stub on
# localhost:1234, and attach gdb to it. The default kernel is the one with full debug info
# (`cargo build -p boot --target s390x-unknown-linux-gnu --profile gdb`, which
# `cargo xtask run --gdb` also builds), else the dev kernel (line tables only).
#
#   qemu-scripts/gdb.sh [-k KERNEL] [run.sh options...] [KERNEL ARGS...]
#
# Uses gdb-multiarch (Debian package gdb-multiarch) or gdb. QEMU's console output goes to
# target/xtask/gdb-console.log; QEMU is stopped when gdb exits.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
kernel="${CARGO_TARGET_DIR:-$root/target}/s390x-unknown-linux-gnu/gdb/zhint"
[ -f "$kernel" ] || kernel="${CARGO_TARGET_DIR:-$root/target}/s390x-unknown-linux-gnu/debug/zhint"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = "-k" ] && [ $((i + 1)) -lt ${#args[@]} ]; then kernel="${args[$((i + 1))]}"; fi
done
gdb=$(command -v gdb-multiarch || command -v gdb || true)
if [ -z "$gdb" ]; then
    echo "gdb.sh: install gdb-multiarch (apt-get install gdb-multiarch)" >&2
    exit 2
fi
log="${CARGO_TARGET_DIR:-$root/target}/xtask/gdb-console.log"
mkdir -p "$(dirname "$log")"
"$here/run.sh" -q "-s -S" "$@" >"$log" 2>&1 &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true' EXIT
echo "gdb.sh: QEMU (pid $qemu) waits on localhost:1234; console in $log"
"$gdb" -q "$kernel" \
    -ex "set architecture s390:64-bit" \
    -ex "target remote localhost:1234"
