#!/usr/bin/env bash
# Boot an already built zhint kernel with plain QEMU (no xtask).
#
#   qemu-scripts/run.sh [-k KERNEL] [-a tcg|kvm] [-c CPU] [-m MEM] [-s SMP] [-l] [-q "QEMU ARGS"] [KERNEL ARGS...]
#
#   -k  kernel image (default: target/s390x-unknown-linux-gnu/debug/zhint)
#   -a  accelerator (default tcg: multi-threaded)   -c  CPU model (default qemu)
#   -m  memory (default 256M)          -s  CPUs (default 1)
#   -l  use the line-mode console (sclplmconsole) instead of the ASCII console
#   -q  extra QEMU arguments (word-split)
# Remaining arguments become the kernel command line, e.g. `run.sh ktest.list`.
# The kernel ends with an `EXIT: STATUS=n` console line (1 passed, 3 failed, 77 skipped);
# QEMU exits 1 when the kernel stops in a disabled wait (panic). Whether a run passed is
# more than that status (docs/verdict.md): judge a captured console with
# `run.sh ... | tee console.log; cargo xtask parse console.log`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kernel="${CARGO_TARGET_DIR:-$root/target}/s390x-unknown-linux-gnu/debug/zhint"
accel=tcg cpu=qemu mem=256M smp=1 console=sclpconsole extra=""
while getopts "k:a:c:m:s:lq:h" opt; do
    case "$opt" in
        k) kernel="$OPTARG" ;;
        a) accel="$OPTARG" ;;
        c) cpu="$OPTARG" ;;
        m) mem="$OPTARG" ;;
        s) smp="$OPTARG" ;;
        l) console=sclplmconsole ;;
        q) extra="$OPTARG" ;;
        h) sed -n '2,15p' "$0"; exit 0 ;;
        *) sed -n '2,15p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ ! -f "$kernel" ]; then
    echo "run.sh: no kernel at $kernel; build it with: cargo xtask build" >&2
    exit 2
fi
append=()
if [ "$#" -gt 0 ]; then append=(-append "$*"); fi
# TCG with one host thread per vCPU, so guest CPUs really run in parallel (QEMU 7.2's
# default for s390x on x86-64 anyway); `-a tcg,thread=single` rules races out while
# debugging.
if [ "$accel" = tcg ]; then accel="tcg,thread=multi"; fi
# shellcheck disable=SC2086 # extra QEMU arguments are meant to be word-split
exec qemu-system-s390x -nodefaults -nographic \
    -machine s390-ccw-virtio -accel "$accel" -cpu "$cpu" -m "$mem" -smp "$smp" \
    -chardev stdio,id=con0 -device "$console,chardev=con0" \
    -action panic=exit-failure \
    -kernel "$kernel" "${append[@]}" $extra </dev/null
