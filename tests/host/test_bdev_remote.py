"""The network block backends (src/backends/block/nbd.c, iscsi.c) against
real servers: qemu-nbd (Unix socket and loopback TCP), nbdkit (multi-conn)
and tgtd (the Linux userspace iSCSI target) on loopback.

`vio serve --blk path=URI` exports the remote disk over vhost-user and
`vio bench blk --rw verify` (a virtio driver in a host process) writes a
pattern through it and reads it back; the test then reads the server's
backing file on the host and recomputes the pattern, so passing proves the
bytes went through the network protocol to the right offsets. Discard and
write zeroes, sent by a Python virtio driver (tests/lib/vuclient.py), must
reach the file as zeroes.

Reconnect: the server is killed in the middle of a bench run. The run must
end on time with I/O errors (not hang), vio must stay up, and once the
server is back the same device serves a clean verify run and its info shows
the disconnect and the reconnect. Bad URIs and absent servers are clear
errors with exit code 1.

Needs qemu-nbd, nbdkit, tgtd/tgtadm (scripts/deps.sh installs them) and
root for tgtd; a missing piece fails the test with what to install.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vioproc  # noqa: E402
from sanpeers import IQN, QemuNbd, Server, free_port, need, tgtd_for, wait_path  # noqa: E402,F401
import vuclient as vu  # noqa: E402
from test_bench import DISK, bench, bench_json, check_image, image, pattern  # noqa: E402

BLK_T_DISCARD = 11
BLK_T_WRITE_ZEROES = 13
BLK_F_DISCARD = 13
BLK_F_WRITE_ZEROES = 14
SEG_F_UNMAP = 1


def workdir(name):
    base = Path(os.environ.get("VIO_TEST_WORKDIR", vioproc.REPO / "build" / "test-work"))
    wd = base / ("bdev_remote_" + name)
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    return wd


def serve(wd, uri, extra=""):
    sock = wd / "blk.sock"
    vs = vioproc.VioServe(["--blk", "id=r0,socket=%s,path=%s%s" % (sock, uri, extra)],
                          workdir=wd)
    return vs, sock


def backend_info(vs):
    return vs.stats("r0")["backend"]


def verify(sock, seed, count=1024, qd=16, queues=1):
    r, _ = bench_json("blk", "--socket", sock, "--rw", "verify", "--count", count, "--qd", qd,
                      "--queues", queues, "--seed", seed, timeout=60)
    assert r["verified"] == count and r["mismatches"] == 0 and r["errors"] == 0, r


def discard_and_zeroes(sock, zero_unmap):
    """Fill sectors 0-255 with a pattern, then zero 64-127 (write zeroes,
    UNMAP flag @zero_unmap) and discard 128-191, through a Python driver."""
    feats = vu.VhostUserClient.DEFAULT_FEATURES | vu.bit(BLK_F_DISCARD) | vu.bit(
        BLK_F_WRITE_ZEROES)
    c, mem, blk = vu.connect_blk(str(sock), qsize=16, max_io=128 * 1024, features=feats)
    with c:
        assert c.features & vu.bit(BLK_F_DISCARD), "the device does not offer discard"
        assert c.features & vu.bit(BLK_F_WRITE_ZEROES), "the device does not offer write zeroes"
        blk.write(0, pattern(3, 0, 128 * 1024))
        st, _, _ = blk.run(BLK_T_WRITE_ZEROES, data=struct.pack(
            "<QII", 64, 64, SEG_F_UNMAP if zero_unmap else 0))
        assert st == vu.BLK_S_OK, "write zeroes: status %d" % st
        st, _, _ = blk.run(BLK_T_DISCARD, data=struct.pack("<QII", 128, 64, 0))
        assert st == vu.BLK_S_OK, "discard: status %d" % st
        blk.flush()


def check_discard_and_zeroes(img):
    with open(img, "rb") as f:
        data = f.read(128 * 1024)
    want = pattern(3, 0, 128 * 1024)
    assert data[:32768] == want[:32768], "bytes before the zeroed range changed"
    assert data[32768:65536] == bytes(32768), "write zeroes did not reach the file"
    assert data[65536:98304] == bytes(32768), "discard did not reach the file as zeroes"
    assert data[98304:] == want[98304:], "bytes after the discarded range changed"


def test_nbd_unix_socket_verify_lands_in_the_file():
    wd = workdir("nbd_unix")
    img, nsock = wd / "disk.img", str(wd / "nbd.sock")
    image(img)
    with QemuNbd(img, wd / "qemu-nbd.log", sock=nsock).start():
        vs, sock = serve(wd, "nbd+unix:///exp?socket=%s" % nsock)
        with vs:
            vs.wait_socket(str(sock))
            verify(sock, 42)
            info = backend_info(vs)
            assert info["type"] == "nbd" and info["size"] == DISK and info["connected"], info
            assert info["errors"] == 0 and info["reconnects"] == 0, info
    check_image(img, 42, 1024 * 4096)


def test_nbd_tcp_verify_discard_and_zeroes():
    wd = workdir("nbd_tcp")
    img, port = wd / "disk.img", free_port()
    image(img)
    with QemuNbd(img, wd / "qemu-nbd.log", port=port).start():
        vs, sock = serve(wd, "nbd://127.0.0.1:%d/exp" % port)
        with vs:
            vs.wait_socket(str(sock))
            verify(sock, 7, count=512)
            check_image(img, 7, 512 * 4096)
            discard_and_zeroes(sock, zero_unmap=False)
            discard_and_zeroes(sock, zero_unmap=True)
            info = backend_info(vs)
            assert info["discards"] >= 2 and info["write_zeroes"] >= 2, info
    check_discard_and_zeroes(img)


def test_nbd_multi_conn_serves_two_queues_and_single_conn_refuses():
    wd = workdir("nbd_multiconn")
    img, nsock = wd / "disk.img", str(wd / "nbdkit.sock")
    image(img)
    # nbdkit's file plugin offers multi-conn: one connection per queue.
    nbdkit = Server([need("nbdkit", "nbdkit"), "-f", "-U", nsock, "file", img],
                    wd / "nbdkit.log")
    with nbdkit.start():
        wait_path(nsock, nbdkit.proc, "nbdkit")
        vs, sock = serve(wd, "nbd+unix:///?socket=%s" % nsock, ",queues=2")
        with vs:
            vs.wait_socket(str(sock))
            verify(sock, 11, count=1024, queues=2)
            assert backend_info(vs)["multi_conn"] is True
    check_image(img, 11, 1024 * 4096)
    # qemu-nbd does not offer it for a writable export: a device with two
    # queues is refused up front with a message, one queue works.
    wd2 = workdir("nbd_singleconn")
    img2, qsock = wd2 / "disk.img", str(wd2 / "nbd.sock")
    image(img2)
    with QemuNbd(img2, wd2 / "qemu-nbd.log", sock=qsock).start():
        rc, out = serve_fails("nbd+unix:///exp?socket=%s" % qsock, extra=",queues=2")
        assert rc == 1 and "serves only 1 queue" in out and "queues=1" in out, out
        # The same for a SCSI LUN on a controller with two request queues.
        p = subprocess.run([vioproc.vio_bin(), "serve", "--scsi",
                            "id=h0,socket=%s,queues=2" % (wd2 / "h.sock"), "--lun",
                            "hba=h0,path=nbd+unix:///exp?socket=%s" % qsock],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 1 and "give the controller queues=1" in out, out
        vs, sock = serve(wd2, "nbd+unix:///exp?socket=%s" % qsock, ",queues=1")
        with vs:
            vs.wait_socket(str(sock))
            verify(sock, 12, count=256)
    check_image(img2, 12, 256 * 4096)


def test_iscsi_verify_discard_and_zeroes_land_in_the_file():
    wd = workdir("iscsi")
    img = wd / "lun.img"
    image(img)
    with tgtd_for(wd, img).start() as tgt:
        vs, sock = serve(wd, tgt.uri())
        with vs:
            vs.wait_socket(str(sock))
            verify(sock, 42)
            info = backend_info(vs)
            assert info["type"] == "iscsi" and info["size"] == DISK and info["connected"], info
            assert info["unmap"] and info["write_same"], info
        # vio has stopped; tgtd writes through to the file.
        check_image(img, 42, 1024 * 4096)
        vs, sock = serve(wd, tgt.uri())
        with vs:
            vs.wait_socket(str(sock))
            discard_and_zeroes(sock, zero_unmap=False)
            discard_and_zeroes(sock, zero_unmap=True)
            info = backend_info(vs)
            assert info["discards"] >= 2 and info["write_zeroes"] >= 2, info
    check_discard_and_zeroes(img)


def run_through_outage(vs, sock, kill, restart):
    """A 5 s bench run with the server killed at 1 s and back at 1.5 s."""
    t0 = time.time()
    p = subprocess.Popen([vioproc.vio_bin(), "bench", "blk", "--socket", str(sock), "--rw",
                          "randwrite", "--duration", "5", "--qd", "8", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        kill()
        time.sleep(0.5)
        restart()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert time.time() - t0 < 25, "bench hung through the outage"
    assert p.returncode == 1, (p.returncode, out, err)
    assert b"failed: status 1" in err, err[-2000:]
    assert vs.alive(), "vio serve died:\n" + vs.tail()


def wait_reconnected(vs, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = backend_info(vs)
        if info["reconnects"] >= 1 and info["connected"]:
            return info
        time.sleep(0.1)
    raise AssertionError("no reconnect within %.0fs: %s\n%s" % (timeout, backend_info(vs),
                                                                 vs.tail()))


def test_nbd_reconnects_after_the_server_dies():
    wd = workdir("nbd_reconnect")
    img, nsock = wd / "disk.img", str(wd / "nbd.sock")
    image(img)
    srv = QemuNbd(img, wd / "qemu-nbd.log", sock=nsock)
    try:
        srv.start()
        vs, sock = serve(wd, "nbd+unix:///exp?socket=%s" % nsock)
        with vs:
            vs.wait_socket(str(sock))
            run_through_outage(vs, sock, srv.kill, srv.start)
            info = wait_reconnected(vs)
            assert info["disconnects"] >= 1 and info["errors"] > 0, info
            assert "connection lost" in vs.log(), vs.tail()
            verify(sock, 99, count=512)
        with open(img, "rb") as f:
            assert f.read(512 * 4096) == pattern(99, 0, 512 * 4096)
        # Between runs: the server goes away while no queue is open; a run
        # then fails fast, and after a restart the next one passes.
        vs, sock = serve(wd, "nbd+unix:///exp?socket=%s" % nsock)
        with vs:
            vs.wait_socket(str(sock))
            srv.kill()
            rc, out, err = bench("blk", "--socket", sock, "--rw", "verify", "--count", 16,
                                 "--seed", 1, timeout=30)
            assert rc == 1 and "failed: status 1" in err, (rc, out, err)
            srv.start()
            verify(sock, 100, count=256)
    finally:
        srv.kill()


def test_iscsi_reconnects_after_the_target_dies():
    wd = workdir("iscsi_reconnect")
    img = wd / "lun.img"
    image(img)
    tgt = tgtd_for(wd, img)
    try:
        tgt.start()
        vs, sock = serve(wd, tgt.uri())
        with vs:
            vs.wait_socket(str(sock))
            run_through_outage(vs, sock, tgt.kill, tgt.start)
            info = wait_reconnected(vs)
            assert info["disconnects"] >= 1 and info["errors"] > 0, info
            assert "session lost" in vs.log(), vs.tail()
            verify(sock, 77, count=512)
    finally:
        tgt.kill()
    with open(img, "rb") as f:
        assert f.read(512 * 4096) == pattern(77, 0, 512 * 4096)


def serve_fails(path, timeout=30, extra=""):
    wd = workdir("bad")
    p = subprocess.run([vioproc.vio_bin(), "serve", "--blk",
                        "id=b0,socket=%s,path=%s%s" % (wd / "b.sock", path, extra)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    for m in vioproc.SANITIZER_MARKERS:
        assert m not in out, out
    return p.returncode, out


def test_bad_uris_and_absent_servers_are_clear_errors():
    dead = free_port()
    wd = workdir("bad_paths")
    cases = [
        ("nbd://", "no host"),
        ("nbd:///exp", "no host"),
        ("nbd+unix:///exp", "no socket"),
        ("iscsi://127.0.0.1/notaniqn", "no target name"),
        ("iscsi://127.0.0.1/%s" % IQN, "no LUN"),
        ("iscsi:///%s/1" % IQN, "no host"),
        ("gopher://host/disk", "unknown URI scheme"),
        ("nbd+unix:///exp?socket=%s" % (wd / "nobody.sock"), "cannot connect to the NBD server"),
        ("nbd://127.0.0.1:%d/exp" % dead, "Connection refused"),
        ("iscsi://127.0.0.1:%d/%s/1" % (dead, IQN), "cannot log in to the iSCSI target"),
    ]
    for path, msg in cases:
        t0 = time.time()
        rc, out = serve_fails(path)
        assert rc == 1, (path, rc, out)
        assert path in out and msg in out, (path, msg, out)
        assert time.time() - t0 < 10, (path, "took %.1fs" % (time.time() - t0))
    # A wrong export name and an unknown target name come back from the
    # server and are named too.
    img, nsock = wd / "disk.img", str(wd / "nbd.sock")
    image(img)
    with QemuNbd(img, wd / "qemu-nbd.log", sock=nsock).start():
        rc, out = serve_fails("nbd+unix:///nope?socket=%s" % nsock)
        assert rc == 1 and "no export named 'nope'" in out, out
    with tgtd_for(wd, img).start() as tgt:
        rc, out = serve_fails(tgt.uri().replace(IQN, IQN + "x"))
        assert rc == 1 and "Target not found" in out, out
