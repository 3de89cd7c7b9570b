#!/usr/bin/env python3
"""`make demo`: vio serve and vio run, each with a real Linux guest.

1. vio serve gives a QEMU guest a disk over vhost-user: a 256 MiB scratch
   image, a small Linux guest under QEMU (TCG) attached with
   vhost-user-blk-pci writes, reads back and verifies 64 MiB on two queues;
   the host checks the same bytes in the image; `vio ctl` shows the counters.
2. vio run boots the same Linux under KVM with an in-process virtio-blk disk,
   a second disk served by vio serve over vhost-user, virtio-rng and a serial
   console. Where this host's KVM runs guest kernels natively it does so
   directly; where it does not (kvm_pvm emulates guest kernel mode), it boots
   inside the nested rig (a QEMU TCG machine whose own KVM runs the guest),
   and says which.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

from guest import Guest, build_guest, make_initrd  # noqa: E402
from vioproc import VioServe  # noqa: E402

MiB = 1 << 20

GUEST_SCRIPT = """
wait_for_dev /dev/vda
log "guest sees /dev/vda: $(vgtool size /dev/vda) bytes, $(ls /sys/block/vda/mq | wc -l) queues"
t0=$(date +%s)
taskset -c 0 vgtool write /dev/vda 0 32M 2024 --direct & a=$!
taskset -c 1 vgtool write /dev/vda 128M 32M 2025 --direct & b=$!
wait $a || fail "write on cpu 0"
wait $b || fail "write on cpu 1"
must vgtool flush /dev/vda
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify /dev/vda 0 32M 2024 --direct
must vgtool verify /dev/vda 128M 32M 2025 --direct
must vgtool discard /dev/vda 200M 16M
kv seconds $(( $(date +%s) - t0 ))
pass
"""


def say(msg):
    print("demo: " + msg, flush=True)


RUN_GUEST = """
wait_for_dev /dev/vda
wait_for_dev /dev/vdb
log "guest under vio run: $(nproc) CPUs, $(awk '/MemTotal/ {print $2}' /proc/meminfo) KiB"
must vgtool write /dev/vda 1M 8M 7 --direct
must vgtool write /dev/vdb 1M 8M 8 --direct
must vgtool verify /dev/vda 1M 8M 7 --direct
must vgtool verify /dev/vdb 1M 8M 8 --direct
kv rng "$(dd if=/dev/hwrng bs=8 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')"
pass
"""

RIG_SCRIPT = """
truncate -s 64M /tmp/local.img
truncate -s 64M /tmp/remote.img
vio serve --blk id=remote,path=/tmp/remote.img,socket=/tmp/remote.sock >/tmp/serve.log 2>&1 &
i=0; while [ ! -S /tmp/remote.sock ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
run_l2 demo vio run --kernel "$RIG_L2_BZIMAGE" --initrd /rig/l2/demo.initrd \\
    --cmdline "$RIG_L2_APPEND" --mem 256M --cpus 2 \\
    --blk path=/tmp/local.img --vhost-user-blk socket=/tmp/remote.sock --rng
wait_l2_verdict demo 180
wait_l2_exit demo 30
kv exit $?
must vgtool verify /tmp/local.img 1M 8M 7
must vgtool verify /tmp/remote.img 1M 8M 8
pass
"""


def kvm_native(vio):
    p = subprocess.run([vio, "run", "--kvm-probe"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        return None, p.stderr.decode().strip()
    words = p.stdout.decode().split()
    return words[1] == "native", " ".join(words[1:])


def demo_run_native(vio, paths, work):
    """vio run straight on this host's KVM."""
    local, remote, sock = work / "local.img", work / "remote.img", str(work / "remote.sock")
    for img in (local, remote):
        with open(img, "wb") as f:
            f.truncate(64 * MiB)
    initrd = make_initrd(RUN_GUEST, out=work / "run-initrd.cpio.gz")
    with VioServe(["--blk", "id=remote,path=%s,socket=%s" % (remote, sock)],
                  workdir=work / "vio-serve-2") as vs:
        vs.wait_socket(sock)
        cmd = [vio, "run", "--kernel", str(paths.vmlinuz), "--initrd", str(initrd),
               "--cmdline", "console=ttyS0 panic=-1 quiet", "--mem", "256M", "--cpus", "2",
               "--blk", "path=%s" % local, "--vhost-user-blk", "socket=%s" % sock, "--rng"]
        say("running: " + " ".join(cmd))
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=300)
    out = p.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith("vio: "):
            say("guest: " + line[5:])
    if "VIO-TEST PASS" not in out or p.returncode != 0:
        say("FAILED: vio run exited %d\n%s\n%s" % (p.returncode, out[-2000:],
                                                  p.stderr.decode()[-2000:]))
        return False
    for img, seed in ((local, 7), (remote, 8)):
        subprocess.run([str(paths.vgtool_host), "verify", str(img), str(MiB), str(8 * MiB),
                        str(seed)], check=True)
    say("vio run: the guest verified both disks; vio run exited 0 after the guest powered off")
    return True


def demo_run_rig():
    """vio run inside the nested rig."""
    from rig import Rig

    t0 = time.time()
    with Rig(RIG_SCRIPT, l2_tests={"demo": RUN_GUEST}, name="demo-rig") as rig:
        r = rig.wait(420)
    for line in r.l2_logs.get("demo", "").splitlines():
        if line.startswith("vio: "):
            say("guest: " + line[5:])
    if not r.passed:
        say("FAILED in the rig: %s\n%s" % (r.reason, r.l2_logs.get("demo", "")[-3000:]))
        return False
    say("vio run (inside the rig): the L2 guest reached /init %s s after vio run started, "
        "verified an in-process disk and a vio serve disk, read %s from virtio-rng, "
        "powered off; vio run exited %s (%.0f s wall in all)"
        % (r.kv.get("demo.ready_s"), r.kv.get("demo.rng"), r.kv.get("exit"),
           time.time() - t0))
    return r.kv.get("exit") == "0"


def main():
    os.environ.setdefault("VIO_BIN", str(REPO / "build" / "release" / "vio"))
    vio = os.environ["VIO_BIN"]
    if not os.path.exists(vio):
        say("no %s: run `make demo` (it builds first)" % vio)
        return 1
    work = REPO / "build" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    img, sock = work / "disk0.img", str(work / "disk0.sock")
    with open(img, "wb") as f:
        f.truncate(0)
        f.truncate(256 * MiB)
    paths = build_guest()
    say("guest kernel %s, vio binary %s" % (paths.kernel_version, vio))

    spec = "id=disk0,path=%s,socket=%s,queues=2" % (img, sock)
    with VioServe(["--blk", spec], workdir=work / "vio") as vs:
        vs.wait_socket(sock)
        say("started: vio serve --blk %s --ctl %s" % (spec, vs.ctl_path))
        qemu_args = ["-chardev", "socket,id=c0,path=%s" % sock,
                     "-device", "vhost-user-blk-pci,chardev=c0,num-queues=2"]
        say("booting a QEMU guest with: " + " ".join(qemu_args))
        t0 = time.time()
        with Guest(GUEST_SCRIPT, args=qemu_args, name="demo-guest", smp=2) as g:
            r = g.wait(timeout=300)
        for line in r.log.splitlines():
            if line.startswith("vio: "):
                say("guest: " + line[5:])
        if not r.passed:
            say("FAILED in the guest: %s" % r.reason)
            print(r.log[-3000:])
            return 1
        say("guest wrote, read back and verified 64 MiB on 2 queues and discarded 16 MiB "
            "(%s s of guest I/O, %.1f s wall including boot)" % (r.kv.get("seconds"), time.time() - t0))
        ctl = subprocess.run([vio, "ctl", "-s", vs.ctl_path, "stats", "disk0"],
                             stdout=subprocess.PIPE, check=True)
        stats = json.loads(ctl.stdout)
    for off, seed in ((0, 2024), (128 * MiB, 2025)):
        subprocess.run([str(paths.vgtool_host), "verify", str(img), str(off), str(32 * MiB),
                        str(seed)], check=True)
    say("host: the image holds the same 64 MiB the guest wrote")
    print()
    print("  vio ctl stats disk0 (per queue):")
    print("  %-6s %9s %7s %7s %8s %9s %12s %12s %7s" % (
        "queue", "requests", "reads", "writes", "flushes", "discards", "read bytes",
        "write bytes", "errors"))
    for q in stats["queues"]:
        print("  %-6d %9d %7d %7d %8d %9d %12d %12d %7d" % (
            q["queue"], q["requests"], q["reads"], q["writes"], q["flushes"], q["discards"],
            q["read_bytes"], q["write_bytes"], q["errors"]))
    b = stats["backend"]
    print("  backend %s: %d fdatasyncs, %d hole punches, %d errors"
          % (b["path"], b["flushes"], b["discards"], b["errors"]))
    print()

    native, how = kvm_native(vio)
    if native is None:
        say("vio run: cannot use /dev/kvm here (%s)" % how)
        return 1
    if native:
        say("vio run: this host's KVM runs guest kernels natively (%s): booting directly" % how)
        ok = demo_run_native(vio, paths, work)
    else:
        say("vio run: this host's KVM emulates guest kernel mode (%s), so a direct boot would "
            "take minutes; booting inside the nested rig instead (QEMU TCG with nested SVM)"
            % how)
        ok = demo_run_rig()
    if not ok:
        return 1
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
