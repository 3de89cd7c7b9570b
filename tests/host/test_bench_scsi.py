"""Correctness of `vio bench scsi`, the virtio-scsi driver in a host process
(src/bench/bench_scsi.c on src/bench/bench_disk.c and src/vuser/vuser.c),
against `vio serve`'s vhost-user-scsi controller (src/devices/scsi.c).

What passing proves: READ/WRITE CDBs sent through the driver to a LUN land
in that LUN's file at the right offsets (the test recomputes the pattern in
Python and reads the files after vio serve stops), for LUN addresses in both
the peripheral (LUN < 256) and the flat (LUN >= 256) encodings, on another
target, and on a LUN with 4 KiB blocks; data written on the host reads back
("check"); a failing command (a write to a read-only LUN) fails the run with
its sense key and ASC named; a LUN or a target that does not exist is a
clear error within seconds, not a hang; bad command lines fail with clear
messages. Timings are never asserted.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vioproc  # noqa: E402
from test_bench import DISK, bench, bench_json, check_image, image, pattern, workdir  # noqa: E402


def serve_args(sock, luns, queues=2):
    """--scsi h0 with @queues request queues, plus one --lun per (spec) in @luns."""
    args = ["--scsi", "id=h0,socket=%s,queues=%d" % (sock, queues)]
    for spec in luns:
        args += ["--lun", "hba=h0," + spec]
    return args


def test_verify_lands_in_the_lun_files():
    wd = workdir("scsi_verify")
    sock = wd / "h0.sock"
    a, b, c = wd / "a.img", wd / "b.img", wd / "c.img"
    for p in (a, b, c):
        image(p)
    luns = ["lun=0,path=%s" % a,              # peripheral addressing
            "target=1,lun=300,path=%s" % b,   # flat addressing, another target
            "lun=5,path=%s,blksize=4096" % c]
    with vioproc.VioServe(serve_args(sock, luns), workdir=wd) as vs:
        vs.wait_socket(str(sock))
        r, _ = bench_json("scsi", "--socket", sock, "--rw", "verify", "--count", 1024, "--qd",
                          16, "--queues", 2, "--seed", 42, "--backend-pid", vs.proc.pid)
        assert r["bench"] == "scsi", r
        assert r["verified"] == 1024 and r["mismatches"] == 0 and r["errors"] == 0, r
        assert r["ios"] == 2048, r   # 1024 writes, then 1024 reads
        assert r["backend_cpu_s"] >= 0, r
        r, _ = bench_json("scsi", "--socket", sock, "--target", 1, "--lun", 300, "--rw",
                          "verify", "--count", 256, "--qd", 8, "--seed", 5, "--bs", "8k")
        assert r["verified"] == 256 and r["errors"] == 0, r
        r, _ = bench_json("scsi", "--socket", sock, "--lun", 5, "--rw", "verify", "--count",
                          128, "--qd", 4, "--seed", 6, "--bs", "16k")
        assert r["verified"] == 128 and r["errors"] == 0, r
        # The device counted the commands on the LUNs we addressed.
        luns_info = {(x["target"], x["lun"]): x for x in vs.ctl("scsi.luns")}
        assert luns_info[(0, 0)]["writes"] >= 1024 and luns_info[(0, 0)]["reads"] >= 1024, \
            luns_info
        assert luns_info[(1, 300)]["writes"] >= 256, luns_info
        assert luns_info[(0, 5)]["writes"] >= 128, luns_info
        # bs below the LUN's block size cannot be addressed.
        rc, out, err = bench("scsi", "--socket", sock, "--lun", 5, "--bs", "512", "--count", 4)
        assert rc == 1 and "not a multiple of the disk's 4096-byte blocks" in err, (rc, err)
    check_image(a, 42, 1024 * 4096)
    check_image(b, 5, 256 * 8192)
    check_image(c, 6, 128 * 16384)


def test_check_reads_host_data():
    wd = workdir("scsi_check")
    sock, img = wd / "h0.sock", wd / "disk.img"
    nbytes = 256 * 4096
    image(img, pattern(9, 0, nbytes))
    with vioproc.VioServe(serve_args(sock, ["path=%s" % img], queues=1), workdir=wd) as vs:
        vs.wait_socket(str(sock))
        r, _ = bench_json("scsi", "--socket", sock, "--rw", "check", "--count", 256, "--qd", 4,
                          "--seed", 9)
        assert r["verified"] == 256 and r["mismatches"] == 0, r
        r, err = bench_json("scsi", "--socket", sock, "--rw", "check", "--count", 8, "--seed",
                            10, expect_rc=1)
        assert r["verified"] == 0 and r["mismatches"] == 8, r
        assert "does not match the pattern" in err, err


def test_measuring_output():
    wd = workdir("scsi_measure")
    sock, img = wd / "h0.sock", wd / "disk.img"
    image(img)
    with vioproc.VioServe(serve_args(sock, ["path=%s" % img]), workdir=wd) as vs:
        vs.wait_socket(str(sock))
        for rw in ("randread", "randwrite", "read", "write"):
            r, _ = bench_json("scsi", "--socket", sock, "--rw", rw, "--qd", 4, "--queues", 2,
                              "--duration", "0.5", "--backend-pid", vs.proc.pid)
            assert r["rw"] == rw and r["qd"] == 4 and r["queues"] == 2, r
            assert r["ios"] > 0 and r["errors"] == 0, r
            assert r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_p999_us"] <= r["lat_max_us"], r
            assert r["backend_cpu_s"] >= 0, r
        r, _ = bench_json("scsi", "--socket", sock, "--count", 500, "--qd", 32, "--poll",
                          "--bs", "128k", "--rw", "read")
        assert r["ios"] == 500 and r["waits"] == 0, r
        st = vs.stats("h0")
        req = [q for q in st["queues"] if q["role"] == "request"]
        assert sum(q["requests"] for q in req) > 0 and all(q["bad"] == 0 for q in req), st


def test_failed_commands_name_their_sense():
    wd = workdir("scsi_fail")
    sock, img = wd / "h0.sock", wd / "disk.img"
    image(img)
    with vioproc.VioServe(serve_args(sock, ["path=%s,readonly" % img], queues=1),
                          workdir=wd) as vs:
        vs.wait_socket(str(sock))
        r, err = bench_json("scsi", "--socket", sock, "--rw", "randwrite", "--count", 20,
                            "--qd", 4, expect_rc=1)
        assert r["errors"] == 20 and r["ios"] == 0, r
        assert "write at offset" in err and "CHECK CONDITION" in err, err
        assert "DATA PROTECT" in err and "0x27/0x00" in err and "write protected" in err, err
        assert "20 I/Os failed" in err, err
        # Reads of the same LUN are fine.
        r, _ = bench_json("scsi", "--socket", sock, "--rw", "randread", "--count", 20)
        assert r["errors"] == 0, r
    assert bytes(open(img, "rb").read()) == bytes(DISK)


def test_missing_lun_or_target_is_a_clear_error():
    wd = workdir("scsi_nolun")
    sock, img = wd / "h0.sock", wd / "disk.img"
    image(img)
    with vioproc.VioServe(serve_args(sock, ["path=%s" % img], queues=1), workdir=wd) as vs:
        vs.wait_socket(str(sock))
        t0 = time.monotonic()
        rc, out, err = bench("scsi", "--socket", sock, "--lun", 7, "--duration", 1, timeout=30)
        assert rc == 1, (rc, out, err)
        assert "target 0 LUN 7: READ CAPACITY failed" in err, err
        assert "ILLEGAL REQUEST" in err and "logical unit not supported" in err, err
        assert "no such LUN" in err, err
        rc, out, err = bench("scsi", "--socket", sock, "--target", 3, "--duration", 1,
                             timeout=30)
        assert rc == 1, (rc, out, err)
        assert "BAD_TARGET" in err and "no such target" in err, err
        assert time.monotonic() - t0 < 20
        # More request queues than the controller has.
        rc, out, err = bench("scsi", "--socket", sock, "--queues", 2, "--duration", 1)
        assert rc == 1 and "--queues 2 needs a controller with at least 2" in err, (rc, err)
        # The controller still serves the LUN that exists.
        r, _ = bench_json("scsi", "--socket", sock, "--count", 10)
        assert r["errors"] == 0, r


def test_bad_command_lines():
    cases = [
        (["scsi"], "--socket PATH is required"),
        (["scsi", "--rw", "randread"], "--socket PATH is required"),
        (["scsi", "--socket", "x", "--lun", "16384"], "--lun must be a number 0..16383"),
        (["scsi", "--socket", "x", "--lun", "-1"], "--lun must be a number 0..16383"),
        (["scsi", "--socket", "x", "--lun", "one"], "--lun must be a number 0..16383"),
        (["scsi", "--socket", "x", "--target", "256"], "--target must be a number 0..255"),
        (["scsi", "--socket", "x", "--lun"], "'--lun' needs a value"),
        (["scsi", "--socket", "x", "--rw", "sideways"], "unknown --rw"),
        (["scsi", "--socket", "x", "--bs", "1000"], "multiple of 512"),
        (["scsi", "--socket", "x", "--queues", "17"], "--queues must be"),
        (["scsi", "--socket", "x", "--count", "10", "--ramp", "1"], "--ramp goes with"),
        (["scsi", "--socket", "x", "--colour", "red"], "unknown option '--colour'"),
        (["blk", "--socket", "x", "--lun", "0"], "unknown option '--lun'"),
    ]
    for args, msg in cases:
        rc, out, err = bench(*args)
        assert rc == 2, (args, rc, out, err)
        assert msg in err, (args, err)
    rc, out, err = bench("scsi", "--help")
    assert rc == 0 and "--target N" in out and "--lun N" in out, (rc, out)


def test_dead_socket_is_a_clear_error():
    wd = workdir("scsi_dead")
    rc, out, err = bench("scsi", "--socket", wd / "nobody.sock", "--duration", "0.1")
    assert rc == 1, (rc, out, err)
    assert "nobody.sock" in err and "No such file" in err, err
