#!/usr/bin/env python3
"""Self-test of the guest kit (tests/guest + tests/lib/guest.py).

    python3 tests/guest/selftest.py [-v] [TestClass.test_name ...]

Boots real guests (QEMU TCG): about 5-10 s wall each.  Checks the verdict
protocol and harness behaviour, and data integrity through QEMU's own
virtio-blk and through qemu-storage-daemon's vhost-user-blk export (which
exercises the shared-memory setup every vhost-user test relies on).
Prints timings (boot = start to VIO-GUEST-READY, test = guest time in the
test script) on stderr.
"""

import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import guest  # noqa: E402
from guest import Guest, GuestError, GuestTimeout  # noqa: E402

MiB = 1 << 20


def note(msg):
    print("  [selftest] " + msg, file=sys.stderr, flush=True)


def host_verify(path, offset, length, seed):
    p = subprocess.run([str(guest.build_guest().vgtool_host), "verify", str(path),
                        str(offset), str(length), str(seed)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode(errors="replace")


def make_disk(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def timing(name, r):
    t = ""
    if "t_start" in r.kv and "t_end" in r.kv:
        t = ", test %.2f s guest time" % (float(r.kv["t_end"]) - float(r.kv["t_start"]))
    note("%s: boot %.2f s, total %.2f s wall%s" % (name, r.ready_time or -1, r.duration, t))


# Guest-side data test: 32 MiB write + verify at several offsets, O_DIRECT and
# buffered (flush + drop caches before the buffered verify).
DATA_SCRIPT = r'''
kv t_start "$(cut -d' ' -f1 /proc/uptime)"
wait_for_dev /dev/vda
kv size "$(vgtool size /dev/vda)"
must vgtool write  /dev/vda 0    32M 11 --direct
must vgtool write  /dev/vda 100M 32M 12 --direct --fsync
must vgtool write  /dev/vda 200M 32M 13
must vgtool flush  /dev/vda
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify /dev/vda 0    32M 11 --direct
must vgtool verify /dev/vda 100M 32M 12
must vgtool verify /dev/vda 200M 32M 13 --direct
# a sub-range regenerates on its own, at an odd offset
must vgtool verify /dev/vda $((100*1024*1024 + 12345)) 1000 12
# and a wrong seed must be caught
if vgtool verify /dev/vda 0 1M 99 --direct 2>/tmp/err; then fail "wrong seed verified"; fi
log "expected mismatch: $(cat /tmp/err)"
kv t_end "$(cut -d' ' -f1 /proc/uptime)"
pass
'''

# Discard / write-zeroes through the guest block layer.
DISCARD_SCRIPT = r'''
kv t_start "$(cut -d' ' -f1 /proc/uptime)"
wait_for_dev /dev/vda
kv discard_max "$(cat /sys/block/vda/queue/discard_max_bytes)"
kv zeroes_max "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)"
must vgtool write /dev/vda 0 16M 5 --direct --fsync
must vgtool zeroout /dev/vda 1M 2M
must vgtool zeroes /dev/vda 1M 2M --direct
must vgtool verify /dev/vda 0 1M 5 --direct
must vgtool verify /dev/vda 3M 1M 5 --direct
must vgtool discard /dev/vda 8M 4M
must vgtool flush /dev/vda
must vgtool zeroes /dev/vda 8M 4M --direct
must vgtool verify /dev/vda 4M 4M 5 --direct
must vgtool verify /dev/vda 12M 4M 5 --direct
must vgtool fill /dev/vda 20M 1M 0xa5 --direct
kv t_end "$(cut -d' ' -f1 /proc/uptime)"
pass
'''


class QSD:
    """qemu-storage-daemon exporting one raw file as vhost-user-blk."""

    def __init__(self, workdir, image, discard=False):
        self.sock = Path(workdir) / "vub.sock"
        self.log = open(Path(workdir) / "qsd.log", "wb")
        bd = "driver=file,node-name=f0,filename=%s" % image
        if discard:
            bd += ",discard=unmap"
        cmd = ["qemu-storage-daemon", "--blockdev", bd,
               "--export", "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,"
               "addr.path=%s,writable=on" % self.sock]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("qemu-storage-daemon did not start: "
                                   + (Path(workdir) / "qsd.log").read_text())
            time.sleep(0.02)

    def qemu_args(self, num_queues=1):
        return ["-chardev", "socket,id=c0,path=%s" % self.sock,
                "-device", "vhost-user-blk-pci,chardev=c0,num-queues=%d" % num_queues]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class DataPath(unittest.TestCase):
    def check_data(self, name, image, args):
        with Guest(DATA_SCRIPT, args=args, name=name, workdir=image.parent) as g:
            r = g.wait(timeout=300)
        timing(name, r)
        self.assertTrue(r.passed, "%s\n%s" % (r.reason, r.log[-3000:]))
        self.assertEqual(r.kv["size"], str(256 * MiB))
        for off, seed in ((0, 11), (100 * MiB, 12), (200 * MiB, 13)):
            rc, out = host_verify(image, off, 32 * MiB, seed)
            self.assertEqual(rc, 0, out)
        rc, out = host_verify(image, 0, 32 * MiB, 12)
        self.assertNotEqual(rc, 0, "host verify with a wrong seed passed")

    def test_virtio_blk(self):
        wd = guest.new_workdir("selftest-virtio-blk")
        image = wd / "disk.img"
        make_disk(image, 256 * MiB)
        self.check_data("virtio-blk", image,
                        ["-drive", "file=%s,if=virtio,format=raw" % image])

    def test_vhost_user_blk_qsd(self):
        wd = guest.new_workdir("selftest-vhost-user-blk")
        image = wd / "disk.img"
        make_disk(image, 256 * MiB)
        qsd = QSD(wd, image)
        try:
            self.check_data("vhost-user-blk (qsd)", image, qsd.qemu_args())
        finally:
            qsd.close()


class Discard(unittest.TestCase):
    def check_discard(self, name, image, args):
        with Guest(DISCARD_SCRIPT, args=args, name=name, workdir=image.parent) as g:
            r = g.wait(timeout=300)
        timing(name, r)
        self.assertTrue(r.passed, "%s\n%s" % (r.reason, r.log[-3000:]))
        note("%s: discard_max_bytes=%s write_zeroes_max_bytes=%s" %
             (name, r.kv.get("discard_max"), r.kv.get("zeroes_max")))
        data = image.read_bytes()
        self.assertEqual(data[1 * MiB:3 * MiB], bytes(2 * MiB))
        self.assertEqual(data[8 * MiB:12 * MiB], bytes(4 * MiB))
        self.assertEqual(data[20 * MiB:21 * MiB], b"\xa5" * MiB)
        self.assertEqual(data[:MiB], guest.pattern_bytes(5, 0, MiB))
        # The discard punched a hole: the file holds fewer blocks than 21 MiB.
        st = os.stat(image)
        note("%s: image allocated %d KiB of 21 MiB written" % (name, st.st_blocks // 2))
        self.assertLess(st.st_blocks * 512, 21 * MiB)

    def test_virtio_blk_discard_unmap(self):
        wd = guest.new_workdir("selftest-discard-virtio")
        image = wd / "disk.img"
        make_disk(image, 64 * MiB)
        self.check_discard("virtio-blk discard=unmap", image,
                           ["-drive", "file=%s,if=virtio,format=raw,discard=unmap" % image])

    def test_qsd_discard(self):
        wd = guest.new_workdir("selftest-discard-qsd")
        image = wd / "disk.img"
        make_disk(image, 64 * MiB)
        qsd = QSD(wd, image, discard=True)
        try:
            self.check_discard("vhost-user-blk (qsd) discard", image, qsd.qemu_args())
        finally:
            qsd.close()


class Harness(unittest.TestCase):
    def test_smp_taskset(self):
        script = r'''
kv nproc "$(nproc)"
kv online "$(cat /sys/devices/system/cpu/online)"
for c in 0 1; do
    # field 39 of /proc/PID/stat is the CPU the task last ran on
    kv ran_on_$c "$(taskset -c $c sh -c 'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; cut -d" " -f39 /proc/self/stat')"
done
kv mask "$(taskset -p $$ | sed 's/.*: //')"
pass
'''
        with Guest(script, smp=2, name="selftest-smp") as g:
            r = g.wait(120)
        timing("smp2", r)
        self.assertTrue(r.passed, r.reason)
        self.assertEqual(r.kv["nproc"], "2")
        self.assertEqual(r.kv["online"], "0-1")
        self.assertEqual(r.kv["ran_on_0"], "0")
        self.assertEqual(r.kv["ran_on_1"], "1")
        self.assertEqual(r.kv["mask"], "3")

    def test_verdicts_and_files(self):
        files = {"/data/blob.bin": bytes(range(256)) * 4, "/data/run.sh": ("echo hi\n", 0o755)}
        script = r'''
kv blob_md5 "$(md5sum /data/blob.bin | cut -d' ' -f1)"
kv run "$(/data/run.sh)"
kv spaced "a b  c"
( fail "from a subshell" )
pass
'''
        with Guest(script, files, name="selftest-verdicts") as g:
            r = g.wait(120)
        import hashlib
        self.assertFalse(r.passed)
        self.assertEqual(r.reason, "from a subshell")
        self.assertEqual(r.kv["blob_md5"], hashlib.md5(files["/data/blob.bin"]).hexdigest())
        self.assertEqual(r.kv["run"], "hi")
        self.assertEqual(r.kv["spaced"], "a b  c")
        self.assertEqual(r.verdicts, ["FAIL from a subshell", "PASS"])
        self.assertEqual(r.exit_code, 0)

    def test_exit_without_verdict(self):
        with Guest("echo doing things\nexit 3\n", name="selftest-exit3") as g:
            r = g.wait(120)
        self.assertFalse(r.passed)
        self.assertEqual(r.reason, "test.sh exited 3")
        with Guest("true\n", name="selftest-exit0") as g:
            r = g.wait(120)
        self.assertFalse(r.passed)
        self.assertIn("without a verdict", r.reason)

    def test_kill_and_timeout(self):
        script = 'kv phase writing\nwhile :; do sleep 1; done\n'
        g = Guest(script, name="selftest-kill", qmp=True)
        with g:
            self.assertEqual(g.wait_kv("phase", timeout=60), "writing")
            self.assertEqual(g.qmp("query-status")["status"], "running")
            g.kill()
            r = g.result()
        self.assertEqual(r.exit_code, -9)
        self.assertFalse(r.passed)
        self.assertIn("signal 9", r.reason)
        with Guest(script, name="selftest-timeout") as g:
            g.wait_ready(60)
            with self.assertRaises(GuestTimeout) as cm:
                g.wait(timeout=2)
            self.assertIn("VIO-GUEST-READY", str(cm.exception))
            self.assertFalse(g.running())

    def test_qemu_start_failure(self):
        with Guest("pass\n", args=["-device", "no-such-device"], name="selftest-badarg") as g:
            with self.assertRaises(GuestError) as cm:
                g.wait_ready(30)
        self.assertIn("no-such-device", str(cm.exception))


if __name__ == "__main__":
    t0 = time.monotonic()
    guest.build_guest()
    note("build_guest: %.2f s" % (time.monotonic() - t0))
    unittest.main()
