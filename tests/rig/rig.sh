# shellcheck shell=sh disable=SC3043,SC2034
# (busybox ash has "local"; the RIG_* variables are for the test scripts)
# /lib/rig.sh - helpers for the nested rig's L1 test scripts (busybox sh).
#
# /init sources /lib/vio.sh (pass, fail, kv, must, log, wait_for_dev) and then
# this file before /rig-test.sh.  An L2 machine is any VMM command run inside
# L1 on /dev/kvm: `vio run ...`, or QEMU microvm as the reference.
#
# Starting and watching L2 machines
#   run_l2 NAME CMD [ARGS...]     start the VMM command CMD in the background.
#                                 Its stdout+stderr (the L2 serial console when
#                                 the VMM prints it there) go to /tmp/NAME.log
#                                 and, line by line as "NAME|L1-UPTIME| line",
#                                 to L1's ttyS1, which the host saves as
#                                 <workdir>/l2/NAME.log.  stdin is /dev/null.
#   run_l2_qemu NAME INITRD [QEMU-ARGS...]
#                                 run_l2 with QEMU -M microvm -accel kvm as the
#                                 VMM: kernel $RIG_L2_KERNEL, -m $RIG_L2_MEM,
#                                 -smp $RIG_L2_CPUS, -append "$RIG_L2_APPEND",
#                                 serial console on stdout (needs Rig(qemu=True))
#   wait_l2_ready NAME [SECS]     wait for VIO-GUEST-READY from NAME (default
#                                 60 s); fail if the VMM exits first or time
#                                 runs out.  Emits kv NAME.ready_s.
#   wait_l2_verdict NAME [SECS]   wait for NAME's VIO-TEST verdict (default
#                                 120 s) and re-emit the L2's VIO-KV lines as
#                                 kv NAME.KEY, plus NAME.verdict, NAME.ready_s,
#                                 NAME.verdict_s; fail unless the L2 passed.
#   l2_verdict NAME [SECS]        the same without failing: returns 0 (PASS),
#                                 1 (FAIL) or 2 (no verdict: VMM exited or
#                                 timeout); the reason is in $L2_REASON.
#   wait_l2_exit NAME [SECS]      wait for the VMM to exit (default 30 s); emits
#                                 kv NAME.exit (its status) and NAME.exit_s;
#                                 returns the VMM's exit status, 124 on timeout.
#   run_l2_test NAME SECS CMD [ARGS...]
#                                 run_l2 + wait_l2_verdict + the VMM must exit 0
#                                 within 30 s of the verdict
#   stop_l2 NAME [SIGNAL]         signal the VMM (default TERM; KILL after 5 s)
#   l2_running NAME               true while the VMM runs
#   l2_kv NAME KEY                print the value of NAME's VIO-KV KEY
#   l2_pid NAME                   print the VMM's pid
#
# L2 initrds
#   make_l2_initrd SCRIPT OUT [SRC=DEST...]
#                                 OUT = the L2 base initramfs ($RIG_L2_INITRD)
#                                 + an archive with SCRIPT as /test.sh (SCRIPT
#                                 "-" reads stdin) and extra L1 files SRC at L2
#                                 paths DEST (not under /tmp /run /dev /proc /sys)
#   Initrds prepared on the host (Rig(l2_tests={NAME: script})) are at
#   /rig/l2/NAME.initrd.
#
# Other
#   kvm_probe [ARGS]              run kvmprobe (tests/rig/kvmprobe.c), emit its
#                                 results as kv probe.KEY; fail if KVM fails
#   rig_now                       print L1 uptime in seconds (10 ms resolution)
#   rig_cleanup                   stop every L2 still running (/init calls it)
#
# Variables (a test may change them before use)
#   RIG_L2_KERNEL    /rig/l2/vmlinux: uncompressed L2 kernel, PVH ELF entry
#   RIG_L2_BZIMAGE   /rig/l2/vmlinuz: the same kernel as a bzImage
#   RIG_L2_INITRD    /rig/l2/initramfs.cpio.gz: the guest kit's initramfs (no
#                    /test.sh: it prints VIO-GUEST-READY and powers off)
#   RIG_L2_APPEND    recommended L2 kernel command line (console=ttyS0, quiet,
#                    the guest kit's speed-ups, and cmos_init skipped: probing
#                    the CMOS RTC costs 5-7 s in an L2)
#   RIG_L2_MEM       run_l2_qemu's -m (MiB, default 256)
#   RIG_L2_CPUS      run_l2_qemu's -smp (default 1)
#   RIG_VIO          /usr/local/bin/vio (present if Rig(vio=...) shipped it)
#
# State of L2 NAME lives in /tmp/.rig/NAME.*: cmd, pid, t0 (L1 uptime at start),
# ready and verdict (uptime when seen), exit_t, rc (exit status), done (output drained).
# NAME is made of [A-Za-z0-9_.-].

RIG_L2_DIR=/rig/l2
RIG_L2_KERNEL=$RIG_L2_DIR/vmlinux
RIG_L2_BZIMAGE=$RIG_L2_DIR/vmlinuz
RIG_L2_INITRD=$RIG_L2_DIR/initramfs.cpio.gz
RIG_L2_APPEND="console=ttyS0 panic=-1 quiet cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,cmos_init"
RIG_L2_MEM=${RIG_L2_MEM:-256}
RIG_L2_CPUS=${RIG_L2_CPUS:-1}
RIG_VIO=/usr/local/bin/vio
RIG_STATE=/tmp/.rig
if [ -z "${RIG_CHAN:-}" ]; then
    RIG_CHAN=/dev/null
    if [ -c /dev/ttyS1 ] && (: >>/dev/ttyS1) 2>/dev/null; then
        RIG_CHAN=/dev/ttyS1
    fi
fi
L2_REASON=
L2_RC=

rig_now() {
    read -r _rig_up _rig_idle </proc/uptime
    echo "$_rig_up"
}

# Seconds between two uptimes, 2 decimals.
_rig_diff() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'
}

_rig_name() {
    case $1 in
        "" | *[!A-Za-z0-9_.-]*) fail "rig: bad L2 name '$1' (use [A-Za-z0-9_.-])" ;;
    esac
}

_rig_known() {
    _rig_name "$1"
    [ -e "$RIG_STATE/$1.t0" ] || fail "rig: no L2 named '$1' was started (run_l2)"
}

# stdin -> /tmp/NAME.log and "NAME|UPTIME| line" -> $RIG_CHAN; notes the first
# VIO-GUEST-READY and VIO-TEST lines with their L1 uptime.
_rig_fwd() {
    local n="$1" l up idle cr
    cr=$(printf '\r')
    exec 3>>"/tmp/$n.log" 4>>"$RIG_CHAN"
    up=0
    while IFS= read -r l || [ -n "$l" ]; do
        l=${l%"$cr"}
        read -r up idle </proc/uptime
        printf '%s\n' "$l" >&3
        printf '%s|%s| %s\n' "$n" "$up" "$l" >&4
        case $l in
            *VIO-GUEST-READY*)
                [ -e "$RIG_STATE/$n.ready" ] || echo "$up" >"$RIG_STATE/$n.ready" ;;
            *"VIO-TEST "*)
                [ -e "$RIG_STATE/$n.verdict" ] || echo "$up" >"$RIG_STATE/$n.verdict" ;;
        esac
    done
    read -r up idle </proc/uptime
    printf '%s|%s| %s\n' "$n" "$up" "[rig: end of output]" >&4
    exec 3>&- 4>&-
    : >"$RIG_STATE/$n.done"
}

run_l2() {
    [ $# -ge 2 ] || fail "usage: run_l2 NAME CMD [ARGS...]"
    local n="$1"
    shift
    _rig_name "$n"
    if [ -e "$RIG_STATE/$n.pid" ] && [ ! -e "$RIG_STATE/$n.rc" ]; then
        fail "run_l2: L2 $n is already running"
    fi
    mkdir -p "$RIG_STATE"
    rm -f "$RIG_STATE/$n".* "/tmp/$n.log"
    : >"/tmp/$n.log"
    echo "$*" >"$RIG_STATE/$n.cmd"
    rig_now >"$RIG_STATE/$n.t0"
    {
        "$@" </dev/null 2>&1 &
        echo $! >"$RIG_STATE/$n.pid"
        wait $!
        _rig_rc=$?
        rig_now >"$RIG_STATE/$n.exit_t"
        echo "$_rig_rc" >"$RIG_STATE/$n.rc"
    } | _rig_fwd "$n" &
    while [ ! -s "$RIG_STATE/$n.pid" ]; do
        usleep 10000
    done
}

run_l2_qemu() {
    [ $# -ge 2 ] || fail "usage: run_l2_qemu NAME INITRD [QEMU-ARGS...]"
    local n="$1" initrd="$2"
    shift 2
    [ -f "$initrd" ] || fail "run_l2_qemu: no initrd $initrd"
    command -v qemu-system-x86_64 >/dev/null ||
        fail "run_l2_qemu: no qemu-system-x86_64 in L1 (Rig(qemu=True) ships it)"
    run_l2 "$n" qemu-system-x86_64 -M microvm -accel kvm -cpu host \
        -m "$RIG_L2_MEM" -smp "$RIG_L2_CPUS" \
        -nodefaults -no-user-config -display none -no-reboot -serial stdio \
        -kernel "$RIG_L2_KERNEL" -initrd "$initrd" -append "$RIG_L2_APPEND" "$@"
}

l2_pid() {
    _rig_known "$1"
    cat "$RIG_STATE/$1.pid"
}

l2_running() {
    _rig_known "$1"
    [ ! -e "$RIG_STATE/$1.rc" ]
}

# After the VMM exited, give the forwarder a moment to write the rest of the
# output (it may still be reading the pipe).
_rig_settle() {
    local i="0"
    while [ ! -e "$RIG_STATE/$1.done" ] && [ $i -lt 30 ]; do
        usleep 100000
        i=$((i + 1))
    done
}

# _rig_wait NAME SECS FILE: wait until $RIG_STATE/NAME.FILE exists.
# Returns 0 when it does, 1 if the VMM exited without it, 2 on timeout.
_rig_wait() {
    local n="$1" ticks file="$RIG_STATE/$1.$3"
    ticks=$(awk -v s="${2:-60}" 'BEGIN { printf "%d", s * 10 }')
    ticks=$(awk -v t="$ticks" -v f="${VIO_TIMEOUT_SCALE:-1}" 'BEGIN { printf "%d", t * f }')
    while [ ! -e "$file" ]; do
        if [ -e "$RIG_STATE/$n.rc" ]; then
            _rig_settle "$n"
            [ -e "$file" ] && return 0
            return 1
        fi
        [ "$ticks" -le 0 ] && return 2
        usleep 100000
        ticks=$((ticks - 1))
    done
    return 0
}

_rig_since_start() {  # NAME FILE: seconds from run_l2 to the time in NAME.FILE
    _rig_diff "$(cat "$RIG_STATE/$1.t0")" "$(cat "$RIG_STATE/$1.$2")"
}

_rig_exit_note() {
    if [ -e "$RIG_STATE/$1.rc" ]; then
        echo "VMM exited with status $(cat "$RIG_STATE/$1.rc")"
    else
        echo "VMM still running"
    fi
}

wait_l2_ready() {
    [ $# -ge 1 ] || fail "usage: wait_l2_ready NAME [SECS]"
    local n="$1" s="${2:-60}" r
    _rig_known "$n"
    _rig_wait "$n" "$s" ready
    r=$?
    case $r in
        1) fail "L2 $n: no VIO-GUEST-READY, $(_rig_exit_note "$n") (log: l2/$n.log)" ;;
        2) fail "L2 $n: no VIO-GUEST-READY after $s s (log: l2/$n.log)" ;;
    esac
    kv "$n.ready_s" "$(_rig_since_start "$n" ready)"
}

l2_verdict() {
    [ $# -ge 1 ] || fail "usage: l2_verdict NAME [SECS]"
    local n="$1" s="${2:-120}" r first
    _rig_known "$n"
    L2_REASON=
    _rig_wait "$n" "$s" verdict
    r=$?
    # Re-emit the L2's data, whatever the outcome.
    sed -n "s/^.*VIO-KV \([^=[:space:]]*\)=\(.*\)\$/VIO-KV $n.\1=\2/p" "/tmp/$n.log"
    [ -e "$RIG_STATE/$n.ready" ] && kv "$n.ready_s" "$(_rig_since_start "$n" ready)"
    if [ $r -ne 0 ]; then
        if [ $r -eq 2 ]; then
            L2_REASON="no verdict after $s s"
        else
            L2_REASON="no verdict, $(_rig_exit_note "$n")"
        fi
        if [ ! -e "$RIG_STATE/$n.ready" ]; then
            L2_REASON="$L2_REASON, never printed VIO-GUEST-READY"
        fi
        L2_REASON="$L2_REASON (log: l2/$n.log)"
        kv "$n.verdict" NONE
        return 2
    fi
    kv "$n.verdict_s" "$(_rig_since_start "$n" verdict)"
    first=$(grep -m1 -o 'VIO-TEST .*' "/tmp/$n.log")
    case $first in
        "VIO-TEST PASS"*)
            kv "$n.verdict" PASS
            return 0 ;;
    esac
    L2_REASON=${first#VIO-TEST FAIL}
    L2_REASON="FAIL${L2_REASON:+:}$L2_REASON"
    kv "$n.verdict" FAIL
    return 1
}

wait_l2_verdict() {
    [ $# -ge 1 ] || fail "usage: wait_l2_verdict NAME [SECS]"
    l2_verdict "$@" || fail "L2 $1: $L2_REASON"
}

wait_l2_exit() {
    [ $# -ge 1 ] || fail "usage: wait_l2_exit NAME [SECS]"
    local n="$1" s="${2:-30}" ticks
    _rig_known "$n"
    ticks=$(awk -v s="$s" -v f="${VIO_TIMEOUT_SCALE:-1}" 'BEGIN { printf "%d", s * 10 * f }')
    while [ ! -e "$RIG_STATE/$n.rc" ]; do
        if [ "$ticks" -le 0 ]; then
            L2_RC=124
            log "wait_l2_exit: L2 $n still running after $s s"
            return 124
        fi
        usleep 100000
        ticks=$((ticks - 1))
    done
    L2_RC=$(cat "$RIG_STATE/$n.rc")
    kv "$n.exit" "$L2_RC"
    kv "$n.exit_s" "$(_rig_since_start "$n" exit_t)"
    return "$L2_RC"
}

run_l2_test() {
    [ $# -ge 3 ] || fail "usage: run_l2_test NAME SECS CMD [ARGS...]"
    local n="$1" s="$2" rc
    shift 2
    run_l2 "$n" "$@"
    wait_l2_verdict "$n" "$s"
    wait_l2_exit "$n" 30
    rc=$?
    [ "$rc" -eq 0 ] || fail "L2 $n: VMM exited with status $rc after the verdict"
}

stop_l2() {
    [ $# -ge 1 ] || fail "usage: stop_l2 NAME [SIGNAL]"
    local n="$1" sig="${2:-TERM}" pid i="0"
    _rig_known "$n"
    [ -e "$RIG_STATE/$n.rc" ] && return 0
    pid=$(cat "$RIG_STATE/$n.pid")
    kill -"$sig" "$pid" 2>/dev/null
    while [ ! -e "$RIG_STATE/$n.rc" ] && [ $i -lt 50 ]; do
        usleep 100000
        i=$((i + 1))
    done
    if [ ! -e "$RIG_STATE/$n.rc" ]; then
        log "stop_l2: L2 $n ignored SIG$sig, sending KILL"
        kill -KILL "$pid" 2>/dev/null
        i=0
        while [ ! -e "$RIG_STATE/$n.rc" ] && [ $i -lt 20 ]; do
            usleep 100000
            i=$((i + 1))
        done
    fi
    return 0
}

l2_kv() {
    [ $# -eq 2 ] || fail "usage: l2_kv NAME KEY"
    _rig_known "$1"
    sed -n "s/^.*VIO-KV $2=\(.*\)\$/\1/p" "/tmp/$1.log" | tail -n 1
}

make_l2_initrd() {
    [ $# -ge 2 ] || fail "usage: make_l2_initrd SCRIPT OUT [SRC=DEST...]"
    local script="$1" out="$2" d spec src dest size pad
    shift 2
    mkdir -p "$RIG_STATE"
    d=$(mktemp -d "$RIG_STATE/initrd.XXXXXX")
    if [ "$script" = - ]; then
        cat >"$d/test.sh"
    else
        cp "$script" "$d/test.sh" || fail "make_l2_initrd: cannot read $script"
    fi
    chmod 0755 "$d/test.sh"
    for spec in "$@"; do
        src=${spec%%=*}
        dest=${spec#*=}
        case $dest in
            /tmp | /tmp/* | /run | /run/* | /dev | /dev/* | /proc | /proc/* | /sys | /sys/*)
                fail "make_l2_initrd: $dest would be hidden by a mount in the L2's /init" ;;
            /*) ;;
            *) fail "make_l2_initrd: $dest is not an absolute path" ;;
        esac
        mkdir -p "$d$(dirname "$dest")"
        cp "$src" "$d$dest" || fail "make_l2_initrd: cannot copy $src"
    done
    cp "$RIG_L2_INITRD" "$out" || fail "make_l2_initrd: cannot write $out"
    size=$(stat -c %s "$out")
    pad=$(((4 - size % 4) % 4))
    [ "$pad" -gt 0 ] && head -c "$pad" /dev/zero >>"$out"
    (cd "$d" && find . -mindepth 1 | sed 's|^\./||' | cpio -o -H newc 2>/dev/null) >>"$out" ||
        fail "make_l2_initrd: cpio failed"
    rm -rf "$d"
}

kvm_probe() {
    local out rc k v
    out=$(kvmprobe "$@" 2>/dev/null)
    rc=$?
    echo "$out" | while IFS='=' read -r k v; do
        [ -n "$k" ] && kv "probe.$k" "$v"
    done
    [ "$rc" -eq 0 ] || fail "kvmprobe: $(echo "$out" | sed -n 's/^error=//p') (exit $rc)"
}

rig_cleanup() {
    local f n i
    for f in "$RIG_STATE"/*.pid; do
        [ -e "$f" ] || continue
        n=${f##*/}
        n=${n%.pid}
        if [ ! -e "$RIG_STATE/$n.rc" ]; then
            log "rig: stopping L2 $n, still running after the test"
            stop_l2 "$n" TERM
        fi
    done
    for f in "$RIG_STATE"/*.pid; do
        [ -e "$f" ] || continue
        n=${f##*/}
        n=${n%.pid}
        i=0
        while [ ! -e "$RIG_STATE/$n.done" ] && [ $i -lt 20 ]; do
            usleep 100000
            i=$((i + 1))
        done
    done
}
