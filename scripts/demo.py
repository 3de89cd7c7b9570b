#!/usr/bin/env python3
"""`make demo`: vio serve gives a QEMU guest a disk over vhost-user.

Starts `vio serve` with a 256 MiB scratch image, boots a small Linux guest
under QEMU (TCG) attached with vhost-user-blk-pci, lets the guest write,
read back and verify 64 MiB on two queues, checks the same bytes in the
image from the host, and prints the device's counters from `vio ctl`.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

from guest import Guest, build_guest  # noqa: E402
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
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
