"""End-to-end: bad virtual-HBA command lines and control requests.

vio serve --scsi/--lun and vio run --scsi/--lun/--vhost-user-scsi refuse bad
specs before anything is served, with a message naming the problem; the
scsi.* control methods answer bad requests with an error and the server
keeps serving (the LUN list is unchanged and a good request still works).
"""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from guest import new_workdir  # noqa: E402
from vioproc import VioError, VioServe, vio_bin  # noqa: E402


def run_vio(*args, timeout=20):
    p = subprocess.run([vio_bin()] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_refusal(args, words):
    code, out, err = run_vio(*args)
    assert code != 0, "vio %s succeeded:\n%s%s" % (" ".join(map(str, args)), out, err)
    for w in words:
        assert w in err, "vio %s: expected %r in the message, got:\n%s" % (
            " ".join(map(str, args)), w, err)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err


def image(path, size=4 << 20):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_serve_bad_scsi_and_lun_specs():
    w = new_workdir("scsi-cli")
    img = image(w / "a.img")
    sock = str(w / "h.sock")
    hba = "id=h0,socket=%s" % sock
    cases = [
        (["--lun", "hba=h0,path=%s" % img], ["--lun needs a controller"]),
        (["--scsi", "socket=%s" % sock], ["id="]),
        (["--scsi", "id=h0"], ["socket="]),
        (["--scsi", hba + ",queues=0"], ["queues=0"]),
        (["--scsi", hba + ",queues=17"], ["queues=17"]),
        (["--scsi", hba + ",queue-size=100"], ["power of two"]),
        (["--scsi", hba + ",colour=red"], ["unknown option 'colour'"]),
        (["--scsi", hba, "--lun", "path=%s" % img], ["hba=ID is required"]),
        (["--scsi", hba, "--lun", "hba=h9,path=%s" % img], ["hba=h9", "no such SCSI controller"]),
        (["--scsi", hba, "--lun", "hba=h0"], ["path= is required"]),
        (["--scsi", hba, "--lun", "hba=h0,path=/nonexistent.img"], ["/nonexistent.img"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,lun=16384" % img], ["lun=16384"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,target=256" % img], ["target=256"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,vendor=WAYTOOLONGVENDOR" % img],
         ["vendor= is at most 8"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,wwn=0x5001405abcdef123" % img],
         ["wwn=0x5001405abcdef123", "NAA 6"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,blksize=1000" % img], ["blksize=1000"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s,speed=fast" % img], ["unknown option 'speed'"]),
        (["--scsi", hba, "--lun", "hba=h0,path=%s" % img, "--lun", "hba=h0,path=%s" % img],
         ["already has LUN 0:0"]),
        (["--scsi", hba, "--lun", "hba=h0,path=gopher://x/y"], ["gopher://x/y"]),
        (["--scsi", hba, "--blk", "id=h0,path=%s,socket=%s" % (img, w / "b.sock")],
         ["already used"]),
    ]
    for args, words in cases:
        expect_refusal(["serve"] + args, words)


def test_run_bad_scsi_specs():
    w = new_workdir("scsi-run-cli")
    img = image(w / "a.img")
    kernel = w / "kernel"
    kernel.write_bytes(b"\0" * 4096)
    base = ["run", "--kernel", kernel]
    cases = [
        (["--lun", "hba=h0,path=%s" % img], ["hba=h0", "no --scsi controller"]),
        (["--scsi", "id=h0", "--lun", "path=%s" % img], ["no --scsi controller"]),
        (["--scsi", "id=h0,queues=0"], ["queues=0"]),
        (["--scsi"], ["requires an argument"]),
        (["--vhost-user-scsi", "queues=1"], ["socket=PATH is required"]),
        (["--vhost-user-scsi", "socket=/tmp/x.sock,queues=99"], ["queues=99"]),
    ]
    for args, words in cases:
        expect_refusal(base + args, words)


def test_ctl_lun_requests_bad_and_good():
    w = new_workdir("scsi-ctl")
    a, b = image(w / "a.img"), image(w / "b.img", 8 << 20)
    sock = str(w / "h.sock")
    with VioServe(["--scsi", "id=h0,socket=%s,queues=2" % sock,
                   "--blk", "id=d0,path=%s,socket=%s" % (b, w / "d.sock"),
                   "--lun", "hba=h0,lun=0,path=%s" % a], workdir=w / "vio") as vs:
        bad = [
            ("scsi.lun.add", None, "params must be"),
            ("scsi.lun.add", {"spec": 5}, "params must be"),
            ("scsi.lun.add", {"spec": "hba=h0,path=%s" % b, "extra": 1}, "params must be"),
            ("scsi.lun.add", {"spec": "path=%s" % b}, "hba=ID is required"),
            ("scsi.lun.add", {"spec": "hba=d0,path=%s" % b}, "no such SCSI controller"),
            ("scsi.lun.add", {"spec": "hba=h0,lun=0,path=%s" % b}, "already has LUN 0:0"),
            ("scsi.lun.add", {"spec": "hba=h0,lun=1,path=/nonexistent"}, "/nonexistent"),
            ("scsi.lun.add", {"spec": "hba=h0,lun=1,path=%s,bogus" % b}, "unknown option"),
            ("scsi.lun.add", {"spec": "hba=h0,lun=,path=%s" % b}, "lun="),
            ("scsi.lun.remove", None, "params must be"),
            ("scsi.lun.remove", {"hba": "h0"}, "params must be"),
            ("scsi.lun.remove", {"hba": "h0", "lun": -1}, "params must be"),
            ("scsi.lun.remove", {"hba": "h0", "lun": "x"}, "params must be"),
            ("scsi.lun.remove", {"hba": "h0", "lun": 16384}, "params must be"),
            ("scsi.lun.remove", {"hba": "h0", "lun": 0, "target": 300}, "params must be"),
            ("scsi.lun.remove", {"hba": 7, "lun": 0}, "params must be"),
            ("scsi.lun.remove", {"hba": "d0", "lun": 0}, "no SCSI controller"),
            ("scsi.lun.remove", {"hba": "h0", "lun": 9}, "has no LUN 0:9"),
        ]
        for method, params, words in bad:
            try:
                res = vs.ctl(method, params)
            except VioError as e:
                assert words in str(e), "%s %s: expected %r, got %s" % (method, params, words, e)
            else:
                raise AssertionError("%s %s succeeded: %s" % (method, params, res))
            assert vs.alive(), "vio serve died on %s %s:\n%s" % (method, params, vs.tail())
        luns = vs.ctl("scsi.luns")
        assert [(x["hba"], x["target"], x["lun"]) for x in luns] == [("h0", 0, 0)], luns
        # Good requests still work, also through vio ctl's shortcuts.
        env_ctl = ["ctl", "-s", vs.ctl_path]
        code, out, err = run_vio(*env_ctl, "lun-add", "hba=h0,target=2,lun=7,path=%s,readonly" % b)
        assert code == 0, err
        luns = {(x["target"], x["lun"]): x for x in vs.ctl("scsi.luns")}
        assert luns[(2, 7)]["readonly"] is True and luns[(2, 7)]["size_bytes"] == 8 << 20, luns
        code, out, err = run_vio(*env_ctl, "lun-remove", "h0", "7", "2")
        assert code == 0, err
        code, out, err = run_vio(*env_ctl, "lun-remove", "h0", "seven")
        assert code == 2 and "is not a number" in err, (code, err)
        code, out, err = run_vio(*env_ctl, "lun-remove", "h0", "7", "2")
        assert code == 1 and "has no LUN 2:7" in err, (code, err)
        code, out, err = run_vio(*env_ctl, "luns")
        assert code == 0 and '"lun": 0' in out, out
        assert [(x["target"], x["lun"]) for x in vs.ctl("scsi.luns")] == [(0, 0)]
