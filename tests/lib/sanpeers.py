"""Real storage-network peers for the tests: qemu-nbd and nbdkit (NBD
servers) and tgtd (the Linux userspace iSCSI target), each started on
loopback or a Unix socket with private ports, and killed with SIGKILL (the
crash case) when the test is done with it.

Used by tests/host/test_bdev_remote.py (the backends alone) and
tests/qemu/test_scsi.py (guests with LUNs on them). A missing tool fails the
test with the package to install.
"""

import os
import shutil
import socket
import subprocess
import time

IQN = "iqn.2026-12.io.vio:test"


def need(tool, package):
    p = shutil.which(tool)
    if not p:
        raise AssertionError("%s is not installed: apt-get install %s (scripts/deps.sh)"
                             % (tool, package))
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port, proc, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s before listening" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("%s did not listen on port %d within %.0fs" % (what, port, timeout))


def wait_path(path, proc, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s before %s appeared" % (what, proc.returncode,
                                                                          path))
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError("%s did not create %s within %.0fs" % (what, path, timeout))


class Server:
    """A peer process, killed (SIGKILL: the crash case) when the block ends."""

    def __init__(self, args, log):
        self.args, self.log = [str(a) for a in args], log
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
            self.logf.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class QemuNbd(Server):
    """qemu-nbd serving @img as export 'exp', on a Unix socket or TCP port."""

    def __init__(self, img, log, sock=None, port=None):
        args = [need("qemu-nbd", "qemu-utils"), "-t", "-f", "raw", "-x", "exp",
                "--discard=unmap", "--cache=writeback"]
        args += ["-k", sock] if sock else ["-b", "127.0.0.1", "-p", port]
        super().__init__(args + [img], log)
        self.sock, self.port = sock, port

    def start(self):
        if self.sock and os.path.exists(self.sock):
            os.unlink(self.sock)
        super().start()
        try:
            if self.sock:
                wait_path(self.sock, self.proc, "qemu-nbd")
            else:
                wait_tcp(self.port, self.proc, "qemu-nbd")
        except BaseException:
            self.kill()
            raise
        return self


class Tgtd(Server):
    """tgtd with a private control port and iSCSI portal, exporting @img as
    LUN 1 of target IQN to every initiator, with thin provisioning (UNMAP)."""

    def __init__(self, img, log, port, control):
        need("tgtadm", "tgt")
        if os.geteuid() != 0:
            raise AssertionError("tgtd needs root; run the host stage as root")
        super().__init__([need("tgtd", "tgt"), "-f", "-C", control, "--iscsi",
                          "portal=127.0.0.1:%d" % port], log)
        self.img, self.port, self.control = img, port, control
        self.ctl_sock = "/var/run/tgtd/socket.%d" % control

    def _cleanup(self):
        for p in (self.ctl_sock, self.ctl_sock + ".lock"):
            if os.path.exists(p):
                os.unlink(p)

    def adm(self, *args):
        p = subprocess.run(["tgtadm", "-C", str(self.control), "--lld", "iscsi"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        assert p.returncode == 0, "tgtadm %s: %s" % (" ".join(args), p.stdout.decode())

    def start(self):
        self._cleanup()
        super().start()
        try:
            wait_path(self.ctl_sock, self.proc, "tgtd")
            wait_tcp(self.port, self.proc, "tgtd")
            self.adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", IQN)
            self.adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                     "--backing-store", str(self.img))
            self.adm("--mode", "logicalunit", "--op", "update", "--tid", "1", "--lun", "1",
                     "--params", "thin_provisioning=1")
            self.adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address",
                     "ALL")
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self):
        super().kill()
        self._cleanup()

    def uri(self):
        return "iscsi://127.0.0.1:%d/%s/1" % (self.port, IQN)


def tgtd_for(wd, img):
    return Tgtd(img, wd / "tgtd.log", free_port(), 20000 + os.getpid() % 10000)
