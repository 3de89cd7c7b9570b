"""End-to-end: vio run refuses bad input before anything starts.

Bad command lines, a malformed kernel image, too much memory and a missing
/dev/kvm must each end vio run quickly with a non-zero status and a message
that names the problem. Also the KVM speed probe and its honesty warning.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from guest import build_guest, new_workdir  # noqa: E402
from vioproc import vio_bin  # noqa: E402


def run_vio(args, timeout=30, wrap=None):
    cmd = [vio_bin(), "run"] + args
    if wrap:
        cmd = wrap + cmd
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_refusal(args, words, wrap=None):
    code, out, err = run_vio(args, wrap=wrap)
    assert code != 0, "vio run %s succeeded:\n%s" % (" ".join(args), err)
    for w in words:
        assert w in err, "vio run %s: expected %r in:\n%s" % (" ".join(args), w, err)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    assert "boot 1" not in err, "the VM started despite bad input:\n" + err


def test_bad_command_lines_and_images():
    paths = build_guest()
    k = str(paths.vmlinuz)
    w = new_workdir("run-cli")
    junk = w / "junk.img"
    junk.write_bytes(os.urandom(8192))
    short = w / "short.img"
    short.write_bytes(b"\x00" * 100)
    # A real boot sector signature without the HdrS magic.
    nohdr = w / "nohdr.img"
    nohdr.write_bytes(b"\x00" * 0x1fe + b"\x55\xaa" + b"\x00" * 0x1000)
    # The real kernel with its protocol version patched down to 2.01.
    old = w / "old.img"
    data = bytearray(Path(k).read_bytes()[:65536])
    data[0x206:0x208] = (0x0201).to_bytes(2, "little")
    old.write_bytes(bytes(data))
    cases = [
        ([], ["--kernel is required"]),
        (["--kernel", "/nonexistent/bzImage"], ["/nonexistent/bzImage", "No such file"]),
        (["--kernel", str(w)], ["not a regular file"]),
        (["--kernel", str(junk)], ["not a bzImage"]),
        (["--kernel", str(short)], ["too short"]),
        (["--kernel", str(nohdr)], ["not a bzImage"]),
        (["--kernel", str(old)], ["older than 2.12"]),
        (["--kernel", k, "--initrd", "/nonexistent/initrd"], ["/nonexistent/initrd"]),
        (["--kernel", k, "--mem", "lots"], ["--mem lots"]),
        (["--kernel", k, "--mem", "10M"], ["at least 64M"]),
        (["--kernel", k, "--mem", "65M"], ["2 MiB"]),
        (["--kernel", k, "--mem", "4096G"], ["more than this host"]),
        (["--kernel", k, "--mem", "64M"], ["give the VM more --mem"]),
        (["--kernel", k, "--cpus", "0"], ["--cpus 0"]),
        (["--kernel", k, "--cpus", "999"], ["--cpus 999"]),
        (["--kernel", k, "--blk", "readonly"], ["path=FILE is required"]),
        (["--kernel", k, "--blk", "path=/x,colour=red"], ["unknown option 'colour'"]),
        (["--kernel", k, "--blk", "path=/x,queues=0"], ["queues=0"]),
        (["--kernel", k, "--blk", "path=/x,id=a", "--blk", "path=/y,id=a"], ["used twice"]),
        (["--kernel", k, "--blk", "path=/nonexistent/disk.img"], ["/nonexistent/disk.img"]),
        (["--kernel", k, "--vhost-user-blk", "queues=2"], ["socket=PATH is required"]),
        (["--kernel", k, "--vhost-user-blk", "socket=/nonexistent/x.sock"],
         ["cannot connect"]),
        (["--kernel", k, "--virtio-console", "id=c"], ["in=PATH"]),
        (["--kernel", k, "--io-threads", "0"], ["--io-threads 0"]),
        (["--kernel", k, "--frobnicate"], ["usage"]),
        (["--kernel", k, "stray"], ["unexpected argument"]),
    ]
    # Checked once the VM exists (kernel placement needs its memory map;
    # devices are opened as they are plugged in): on a host without
    # /dev/kvm, vio run must stop earlier and say that instead.
    need_vm = ("give the VM more --mem", "/nonexistent/disk.img", "cannot connect")
    kvm = os.path.exists("/dev/kvm")
    for args, words in cases:
        if not kvm and words[0] in need_vm:
            words = ["/dev/kvm", "does not exist"]
        expect_refusal(args, words)


def test_bad_net_specs():
    """--net and --uplink specs that cannot work end vio run with status 2
    and a message naming the spec, before the VM starts."""
    k = str(build_guest().vmlinuz)
    m = "mac=52:54:00:00:00:01"
    cases = [
        (["--net", "model=e1000"], ["mac=XX:XX:XX:XX:XX:XX is required"]),
        (["--net", "mac=52:54:00:00:01"], ["mac=XX:XX:XX:XX:XX:XX is required"]),
        (["--net", "mac=01:00:5e:00:00:01"], ["not a unicast address"]),
        (["--net", m + ",model=rtl8139"], ["model=rtl8139", "virtio or e1000"]),
        (["--net", m + ",model=e1000,queues=2"], ["queues=2", "one queue pair"]),
        (["--net", m + ",queues=17"], ["queues=17"]),
        (["--net", m + ",vlan=4095"], ["vlan=4095"]),
        (["--net", m + ",colour=red"], ["unknown option 'colour'"]),
        (["--net", m, "--net", "mac=52:54:00:00:00:02,id=net0"], ["id=net0 is used twice"]),
        (["--net", m, "--net", m + ",model=e1000"], ["already net0's"]),
        (["--net", m + ",id=d", "--blk", "path=/x,id=d"], ["id=d is used twice"]),
        (["--uplink", "type=bogus,id=u"], ["unknown type 'bogus'"]),
        (["--uplink", "type=vxlan,id=u,vni=1"], ["missing local"]),
    ]
    for args, words in cases:
        code, out, err = run_vio(["--kernel", k] + args)
        assert code == 2, "vio run %s exited %d:\n%s" % (" ".join(args), code, err)
        expect_refusal(["--kernel", k] + args, words)


def test_bad_nvme_specs():
    """--nvme and --nvme-ns specs that cannot work end vio run with status 2
    and a message naming the spec, before the VM starts."""
    k = str(build_guest().vmlinuz)
    w = new_workdir("run-cli-nvme")
    a, b = str(w / "a.img"), str(w / "b.img")
    for p in (a, b):
        with open(p, "wb") as f:
            f.truncate(16 << 20)
    n0 = ["--nvme", "path=" + a]
    ns = "nvme=nvme0,path=" + b
    cases = [
        (["--nvme", "queues=2"], ["path=FILE is required"]),
        (["--nvme", "path=%s,queues=65" % a], ["queues=65"]),
        (["--nvme", "path=%s,colour=red" % a], ["unknown option 'colour'"]),
        (["--nvme", "path=%s,serial=bad serial" % a], ["serial=bad serial"]),
        (n0 + ["--nvme", "path=%s,id=nvme0" % b], ["id=nvme0 is used twice"]),
        (["--nvme-ns", ns] + n0, ["nvme=nvme0: no --nvme controller with that id before it"]),
        (n0 + ["--nvme-ns", "path=" + b], ["nvme=(missing)"]),
        (n0 + ["--nvme-ns", "nvme=nvme0"], ["path=FILE is required"]),
        (n0 + ["--nvme-ns", ns + ",readonly=maybe"], ["readonly=maybe"]),
        (n0 + ["--nvme-ns", ns + ",queues=2"], ["unknown option 'queues'"]),
        (n0 + ["--nvme-ns", ns] * 8, ["nvme0 already has 8 namespaces"]),
    ]
    for args, words in cases:
        code, out, err = run_vio(["--kernel", k] + args)
        assert code == 2, "vio run %s exited %d:\n%s" % (" ".join(args), code, err)
        expect_refusal(["--kernel", k] + args, words)


def test_missing_dev_kvm():
    """With /dev/kvm hidden (a private mount namespace with an empty /dev),
    vio run says what is missing and what to do."""
    paths = build_guest()
    wrap = ["unshare", "--mount", "--", "sh", "-c",
            'mount -t tmpfs none /dev && exec "$@"', "sh"]
    expect_refusal(["--kernel", str(paths.vmlinuz)], ["/dev/kvm", "does not exist"], wrap=wrap)


def test_kvm_probe_is_honest():
    code, out, err = run_vio(["--kvm-probe"])
    if not os.path.exists("/dev/kvm"):
        # A host without KVM (a VM without nested virtualization): the probe
        # must say so and fail, not invent a speed.
        assert code == 1 and out == "", (code, out, err)
        assert "/dev/kvm" in err and "does not exist" in err, err
        return
    assert code == 0, err
    kind, ns = out.split()[1], float(out.split()[2])
    assert kind in ("slow", "native") and ns > 0, out
    pvm = os.path.exists("/sys/module/kvm_pvm")
    if pvm:
        # This machine's KVM emulates guest kernel mode: the probe must say so.
        assert kind == "slow" and out.strip().endswith("kvm_pvm"), out
