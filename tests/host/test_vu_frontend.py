"""Interop tests of vio's vhost-user front-end library (src/vhost/vu_frontend.c)
through tests/tools/vu_front_probe, against two independent back-ends:
qemu-storage-daemon's vhost-user-blk export and `vio serve`. The probe writes
a file's contents through the library, flushes, stops and resumes the queue,
reads back and compares; these tests then check the back-end's image file on
the host and that both programs exit cleanly.

The probe is $VIO_PROBE_BIN, else build/asan/tests/tools/vu_front_probe.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import vioproc  # noqa: E402

DISK = 16 << 20
SECTOR = 512


def _workdir(name):
    base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
    wd = base / ("vu_frontend_" + name)
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    return wd


def _probe_bin():
    env = os.environ.get("VIO_PROBE_BIN")
    if env:
        return env
    for tree in ("asan", "dev"):
        p = vioproc.REPO / "build" / tree / "tests" / "tools" / "vu_front_probe"
        if p.exists():
            return str(p)
    raise AssertionError("no vu_front_probe binary: build it with `ninja -C build/asan` (the "
                         "top-level meson.build must have subdir('tests/tools') under "
                         "get_option('tests')), or set VIO_PROBE_BIN")


def _qsd_bin():
    p = shutil.which("qemu-storage-daemon")
    if not p:
        raise AssertionError("qemu-storage-daemon is not installed: install the Debian package "
                             "qemu-system-common (apt-get install qemu-system-common)")
    return p


def _image(path):
    with open(path, "wb") as f:
        f.truncate(DISK)


def _data(path, size, seed):
    # A recognizable start, so a misplaced write is easy to spot.
    prefix = b"vu-front-probe-%d-" % seed
    data = (prefix + os.urandom(size))[:size]
    with open(path, "wb") as f:
        f.write(data)
    return data


def _probe(sock, data_path, offset, queue, wd):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=67")
    p = subprocess.run([_probe_bin(), "--offset", str(offset), "--queue", str(queue), str(sock),
                        str(data_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=120, cwd=str(wd))
    out = p.stdout.decode(errors="replace")
    for m in vioproc.SANITIZER_MARKERS:
        if m in out:
            raise AssertionError("sanitizer report from the probe:\n" + out[-4000:])
    if p.returncode != 0:
        raise AssertionError("vu_front_probe exited %d:\n%s" % (p.returncode, out[-4000:]))
    if "\nok %d bytes" % os.path.getsize(data_path) not in "\n" + out:
        raise AssertionError("vu_front_probe did not report success:\n" + out)
    return out


def _capacity(out):
    for line in out.splitlines():
        if line.startswith("capacity "):
            return int(line.split()[1])
    raise AssertionError("the probe printed no capacity (CONFIG not negotiated?):\n" + out)


def _check_image(img, writes):
    """Each (offset, data) is in the image, and the sector before each and
    the image's first sector (unwritten here) are still zero."""
    with open(img, "rb") as f:
        image = f.read()
    assert len(image) == DISK, "the image changed size: %d" % len(image)
    for off, data in writes:
        got = image[off:off + len(data)]
        if got != data:
            first = next(i for i in range(len(data)) if got[i] != data[i])
            raise AssertionError("image %s differs from what was written at %d, first at byte "
                                 "%d" % (img, off, off + first))
        assert image[off - SECTOR:off] == bytes(SECTOR), "write spilled before offset %d" % off
    assert image[:SECTOR] == bytes(SECTOR), "the first sector was written"


class QemuStorageDaemon:
    """qemu-storage-daemon exporting @img as vhost-user-blk on @sock."""

    def __init__(self, img, sock, wd, queues=2):
        self.args = [_qsd_bin(),
                     "--blockdev", "driver=file,node-name=f0,filename=%s" % img,
                     "--export", "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,"
                     "addr.path=%s,writable=on,num-queues=%d" % (sock, queues)]
        self.sock = str(sock)
        self.log_path = wd / "qsd.log"
        self.proc = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise AssertionError("qemu-storage-daemon exited %d:\n%s"
                                     % (self.proc.returncode, self.log()))
            if time.time() > deadline:
                raise AssertionError("qemu-storage-daemon did not create %s:\n%s"
                                     % (self.sock, self.log()))
            time.sleep(0.02)
        return self

    def alive(self):
        return self.proc.poll() is None

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    if exc_type is None:
                        raise AssertionError("qemu-storage-daemon ignored SIGTERM:\n" + self.log())
            if exc_type is None and self.proc.returncode != 0:
                raise AssertionError("qemu-storage-daemon exited %d:\n%s"
                                     % (self.proc.returncode, self.log()))
        finally:
            self._log.close()


def _roundtrips(sock, img, wd, alive):
    """Two probe runs (two connections), on queues 0 and 1, then the image."""
    d1 = _data(wd / "d1.bin", (1 << 20) + 3 * SECTOR, 1)  # 17 requests, the last one short
    d2 = _data(wd / "d2.bin", 8 * SECTOR, 2)
    out = _probe(sock, wd / "d1.bin", 64 << 10, 0, wd)
    assert _capacity(out) == DISK // SECTOR, out
    assert alive(), "the back-end died after the first probe"
    _probe(sock, wd / "d2.bin", DISK - 8 * SECTOR, 1, wd)  # the last 4 KiB, queue 1
    assert alive(), "the back-end died after the second probe"
    _check_image(img, [(64 << 10, d1), (DISK - 8 * SECTOR, d2)])


def test_qemu_storage_daemon_roundtrip():
    wd = _workdir("qsd")
    img, sock = wd / "disk.img", wd / "qsd.sock"
    _image(img)
    with QemuStorageDaemon(img, sock, wd) as qsd:
        _roundtrips(sock, img, wd, qsd.alive)


def test_vio_serve_roundtrip():
    wd = _workdir("vio")
    img, sock = wd / "disk.img", wd / "vio.sock"
    _image(img)
    with vioproc.VioServe(["--blk", "id=d0,path=%s,socket=%s,queues=2" % (img, sock)],
                          name="vu_frontend_vio_serve", workdir=wd) as vs:
        vs.wait_socket(str(sock))
        _roundtrips(sock, img, wd, vs.alive)
        dev = vs.ctl("device.list")[0]
        assert dev["connections"] == 2, dev
        assert dev["dropped_connections"] == 0, dev


def test_probe_without_backend():
    """Nothing listening: the library fails fast with a reason, no hang."""
    wd = _workdir("none")
    _data(wd / "d.bin", SECTOR, 3)
    t0 = time.time()
    p = subprocess.run([_probe_bin(), str(wd / "missing.sock"), str(wd / "d.bin")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 1, "probe exited %d:\n%s" % (p.returncode, out)
    assert "cannot connect" in out, out
    assert time.time() - t0 < 10, "took %.1fs" % (time.time() - t0)
