# shellcheck shell=sh
# /lib/vio.sh - helpers for guest test scripts (busybox sh).
# /init sources this before /test.sh, so tests can use the helpers directly.
#
#   pass                   print "VIO-TEST PASS" and exit 0
#   fail REASON...         print "VIO-TEST FAIL REASON" and exit 1
#   kv KEY VALUE...        print "VIO-KV KEY=VALUE" (value may contain spaces)
#   wait_for_dev DEV [SECONDS]   wait until DEV exists (default 10 s), else fail
#   must CMD ARGS...       run CMD; fail with its exit code if it fails
#   log MSG...             print a "vio: MSG" line (ignored by the host parser)
#
# pass and fail also record the verdict in /run/vio-verdict, so a verdict
# given inside a subshell still counts and /init does not add its own.

VIO_VERDICT_FILE=/run/vio-verdict

pass() {
    echo "VIO-TEST PASS"
    echo PASS >>"$VIO_VERDICT_FILE"
    exit 0
}

fail() {
    echo "VIO-TEST FAIL ${*:-unspecified failure}"
    echo FAIL >>"$VIO_VERDICT_FILE"
    exit 1
}

kv() {
    _vio_k=$1
    shift
    echo "VIO-KV $_vio_k=$*"
}

log() {
    echo "vio: $*"
}

wait_for_dev() {
    _vio_dev=$1
    _vio_ticks=$(( ${2:-10} * 10 ))
    while [ ! -e "$_vio_dev" ]; do
        if [ "$_vio_ticks" -le 0 ]; then
            fail "timeout waiting for $_vio_dev"
        fi
        usleep 100000
        _vio_ticks=$((_vio_ticks - 1))
    done
}

must() {
    "$@"
    _vio_rc=$?
    if [ "$_vio_rc" -ne 0 ]; then
        fail "'$*' exited $_vio_rc"
    fi
}
