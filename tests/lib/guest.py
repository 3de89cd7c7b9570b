"""Boot the vio test guest under QEMU (TCG) and read its verdict.

Python 3 standard library only.  Typical use from an end-to-end test::

    from guest import Guest

    script = '''
    wait_for_dev /dev/vda
    must vgtool write /dev/vda 0 32M 1 --direct
    must vgtool verify /dev/vda 0 32M 1 --direct
    kv size "$(vgtool size /dev/vda)"
    pass
    '''
    with Guest(script, args=["-drive", "file=disk.img,if=virtio,format=raw"]) as g:
        r = g.wait(timeout=120)
    assert r.passed, r.reason
    assert r.kv["size"] == str(64 << 20)

The guest side (tests/guest/init, /lib/vio.sh) prints these console lines:

    VIO-GUEST-READY            before /test.sh runs
    VIO-TEST PASS              verdict (helper: pass)
    VIO-TEST FAIL <reason>     verdict (helper: fail REASON)
    VIO-KV key=value           data for the host (helper: kv KEY VALUE)

and then powers the VM off, so QEMU (run with -no-reboot) exits by itself.
"""

import atexit
import hashlib
import os
import re
import shlex
import signal
import socket
import json
import stat
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "tests" / "guest" / "build.sh"

QEMU = os.environ.get("VIO_QEMU", "qemu-system-x86_64")
QBOOT = "/usr/share/qemu/qboot.rom"

# -cpu max, minus ERMS/FSRM: with those the kernel copies user data with
# "rep movsb", which TCG runs a byte at a time (measured: 128 MiB written to
# tmpfs in 1.6 s with plain max, 0.75 s without them, same as qemu64).
# max keeps SVM + NPT, which the nested-KVM rig needs.
DEFAULT_CPU = os.environ.get("VIO_GUEST_CPU", "max,-erms,-fsrm")

# Kernel arguments that shorten a TCG boot by about 1 s and change nothing the
# tests look at: skip the crypto self-tests, and two initcalls that cost
# 0.45 s (the SP800-108 KDF self-test, run even with cryptomgr.notests) and
# 0.15 s (kprobe trace events) of guest time.
BOOT_SPEEDUPS = ("cryptomgr.notests "
                 "initcall_blacklist=crypto_kdf108_init,init_kprobe_trace")

__all__ = [
    "GuestPaths", "GuestResult", "GuestError", "GuestTimeout", "Guest",
    "build_guest", "make_initrd", "cpio_newc", "new_workdir", "workdir_base",
    "pattern_bytes", "timeout_scale",
]


class GuestError(Exception):
    """The guest could not be built or started, or QEMU died unexpectedly."""


class GuestTimeout(GuestError):
    """A wait on the guest ran out of time (message ends with the console tail)."""


def timeout_scale() -> float:
    """Multiplier for all timeouts (env VIO_TIMEOUT_SCALE, default 1)."""
    try:
        return max(float(os.environ.get("VIO_TIMEOUT_SCALE", "1")), 0.01)
    except ValueError:
        return 1.0


# --------------------------------------------------------------------------
# Build

@dataclass(frozen=True)
class GuestPaths:
    outdir: Path
    vmlinuz: Path         # compressed bzImage (boots anywhere, slower under TCG)
    vmlinux: Path         # uncompressed ELF, PVH entry (default: faster boot)
    initramfs: Path       # base initramfs.cpio.gz
    vgtool_host: Path     # vgtool built for the host
    kernel_version: str


_built: Dict[Path, GuestPaths] = {}
_build_lock = threading.Lock()


def build_guest(outdir: Union[str, Path, None] = None) -> GuestPaths:
    """Run tests/guest/build.sh (at most once per process and outdir).

    outdir defaults to $VIO_GUEST_DIR or <repo>/build/guest.
    """
    out = Path(outdir or os.environ.get("VIO_GUEST_DIR") or REPO / "build" / "guest")
    out = out.resolve()
    with _build_lock:
        if out in _built:
            return _built[out]
        p = subprocess.run(["bash", str(BUILD_SH), str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise GuestError("tests/guest/build.sh failed (exit %d):\n%s"
                             % (p.returncode, p.stdout.decode(errors="replace")[-4000:]))
        paths = GuestPaths(
            outdir=out,
            vmlinuz=out / "vmlinuz",
            vmlinux=out / "vmlinux",
            initramfs=out / "initramfs.cpio.gz",
            vgtool_host=out / "vgtool-host",
            kernel_version=(out / "kernel-version").read_text().strip(),
        )
        _built[out] = paths
        return paths


# --------------------------------------------------------------------------
# Work directories

def workdir_base() -> Path:
    """$VIO_TEST_WORKDIR, default <repo>/build/test-work."""
    return Path(os.environ.get("VIO_TEST_WORKDIR") or REPO / "build" / "test-work")


_wd_lock = threading.Lock()
_wd_used: Dict[str, int] = {}


def _default_test_name() -> str:
    cur = os.environ.get("PYTEST_CURRENT_TEST")
    if cur:
        return cur.split(" ")[0].split("::", 1)[-1]
    # unittest: the innermost TestCase method on the call stack.
    ut = sys.modules.get("unittest")
    if ut is not None:
        f = sys._getframe(1)
        while f is not None:
            obj = f.f_locals.get("self")
            if isinstance(obj, ut.TestCase):
                return obj.id().split(".", 1)[-1]
            f = f.f_back
    return "guest"


def new_workdir(name: Optional[str] = None) -> Path:
    """Create a fresh, empty work directory for one test.

    The path is <base>/<name> (name defaults to the pytest test name, else
    "guest"); a leftover directory of an earlier run is removed first.  A name
    used again in the same process gets a -2, -3, ... suffix.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or _default_test_name()).strip("._") or "guest"
    with _wd_lock:
        n = _wd_used.get(name, 0) + 1
        _wd_used[name] = n
    if n > 1:
        name = "%s-%d" % (name, n)
    d = workdir_base() / name
    if d.exists():
        _rmtree(d)
    d.mkdir(parents=True)
    return d


def _rmtree(d: Path) -> None:
    # Sockets, fifos and read-only files must not stop the cleanup.
    for root, dirs, files in os.walk(d, topdown=False):
        for f in files:
            try:
                os.unlink(os.path.join(root, f))
            except FileNotFoundError:
                pass
        for sub in dirs:
            p = os.path.join(root, sub)
            if os.path.islink(p):
                os.unlink(p)
            else:
                os.rmdir(p)
    os.rmdir(d)


# --------------------------------------------------------------------------
# initrd

def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    nameb = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino,           # c_ino
        mode,          # c_mode
        0, 0,          # c_uid, c_gid
        2 if stat.S_ISDIR(mode) else 1,   # c_nlink
        0,             # c_mtime
        len(data),     # c_filesize
        0, 0, 0, 0,    # c_devmajor, c_devminor, c_rdevmajor, c_rdevminor
        len(nameb),    # c_namesize (with the NUL)
        0,             # c_check
    ))
    out = hdr.encode() + nameb
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def cpio_newc(files: Dict[str, Union[bytes, str, tuple]]) -> bytes:
    """An uncompressed newc archive of files, with parent directories.

    files maps absolute guest paths to bytes/str, or to (data, mode) tuples.
    """
    entries: Dict[str, tuple] = {}
    for path, val in files.items():
        if isinstance(val, tuple):
            data, mode = val
        else:
            data, mode = val, 0o644
        if isinstance(data, str):
            data = data.encode()
        rel = _guest_rel(path)
        parts = rel.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), (b"", stat.S_IFDIR | 0o755))
        entries[rel] = (bytes(data), stat.S_IFREG | (mode & 0o7777))
    out = bytearray()
    ino = 0x7000_0000
    # Parents sort before their children.
    for rel in sorted(entries, key=lambda p: p.split("/")):
        data, mode = entries[rel]
        out += _newc_entry(rel, mode, data, ino)
        ino += 1
    out += _newc_entry("TRAILER!!!", 0, b"", 0)
    return bytes(out)


_HIDDEN = ("proc", "sys", "dev", "tmp", "run")


def _guest_rel(path: str) -> str:
    rel = os.path.normpath("/" + path).lstrip("/")
    if not rel or rel.startswith(".."):
        raise ValueError("bad guest path %r" % path)
    if rel.split("/")[0] in _HIDDEN:
        raise ValueError("guest path %r would be hidden by a mount made in /init "
                         "(proc, sys, dev, tmp, run); use e.g. /data" % path)
    return rel


def make_initrd(script: str, files: Optional[Dict[str, bytes]] = None,
                out: Union[str, Path, None] = None) -> str:
    """Base initramfs + an appended newc archive with /test.sh and files.

    script becomes /test.sh (0755); files maps guest paths to contents
    (bytes, str, or (data, mode)).  Written to out, or to a content-addressed
    file under <workdir base>/initrd/ (reused by identical calls).  Returns
    the path.
    """
    base = build_guest().initramfs
    entries: Dict[str, Union[bytes, str, tuple]] = dict(files or {})
    entries["/test.sh"] = (script.encode() if isinstance(script, str) else script, 0o755)
    extra = cpio_newc(entries)
    if out is None:
        st = base.stat()
        h = hashlib.sha256()
        h.update(("%s %d %d\n" % (base, st.st_size, st.st_mtime_ns)).encode())
        h.update(extra)
        d = workdir_base() / "initrd"
        d.mkdir(parents=True, exist_ok=True)
        out = d / ("%s.cpio.gz" % h.hexdigest()[:20])
        if out.exists():
            return str(out)
    out = Path(out)
    tmp = out.with_name(out.name + ".%d.tmp" % os.getpid())
    with open(base, "rb") as f:
        data = f.read()
    # The kernel only looks for a following archive at a 4-byte boundary;
    # NUL bytes in between are skipped.
    data += b"\0" * (-len(data) % 4)
    with open(tmp, "wb") as f:
        f.write(data)
        f.write(extra)
    os.replace(tmp, out)
    return str(out)


# --------------------------------------------------------------------------
# Data pattern (same bytes as vgtool write/verify)

_M64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def pattern_bytes(seed: int, offset: int, length: int) -> bytes:
    """The bytes vgtool writes at [offset, offset+length) for seed.

    Pure Python (a few MB/s): for small checks; use vgtool-host for big ones.
    """
    key = _mix64(seed & _M64)
    first, last = offset // 8, (offset + length + 7) // 8
    buf = bytearray()
    for w in range(first, last):
        buf += _mix64((key + (w + 1) * 0x9E3779B97F4A7C15) & _M64).to_bytes(8, "little")
    s = offset - first * 8
    return bytes(buf[s:s + length])


# --------------------------------------------------------------------------
# Guest

_LINE_RE = re.compile(
    r"VIO-(?:(?P<ready>GUEST-READY)\b"
    r"|TEST (?P<verdict>PASS|FAIL)\b ?(?P<reason>.*)"
    r"|KV (?P<key>[^=\s]+)=(?P<value>.*))")


@dataclass
class GuestResult:
    passed: bool                  # a PASS verdict and no FAIL verdict
    reason: str                   # first FAIL reason, or why there is no verdict; "" if passed
    kv: Dict[str, str]            # VIO-KV lines (a later key overwrites an earlier one)
    log: str                      # whole console log
    exit_code: Optional[int]      # QEMU's exit status (negative: killed by signal)
    ready: bool = False           # VIO-GUEST-READY was seen
    ready_time: Optional[float] = None   # seconds from start() to VIO-GUEST-READY
    duration: float = 0.0         # seconds from start() to QEMU's exit
    verdicts: List[str] = field(default_factory=list)   # all verdict lines, in order
    qemu_log: str = ""            # QEMU's own stdout/stderr

    def __bool__(self) -> bool:
        return self.passed


def _mib(mem: Union[int, str]) -> int:
    if isinstance(mem, int):
        return mem
    m = re.fullmatch(r"\s*(\d+)\s*([MmGg]?)(?:i?[Bb])?\s*", mem)
    if not m:
        raise ValueError("bad memory size %r (use e.g. 512, '512M', '2G')" % mem)
    return int(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)


_live: "weakref.WeakSet[Guest]" = weakref.WeakSet()


@atexit.register
def _kill_all() -> None:
    for g in list(_live):
        try:
            g.kill()
        except Exception:
            pass


class Guest:
    """One QEMU TCG virtual machine running the test guest.

    Guest(script, files=None, *, initrd=None, args=(), mem="512M", smp=2,
          append="", name=None, workdir=None, cpu=DEFAULT_CPU, machine="pc",
          bios=None, kernel="vmlinux", qmp=False, memfd=True)

    script/files  the test: /test.sh and extra files (see make_initrd); or
    initrd        a ready initrd path (then script/files must be None)
    args          extra QEMU arguments (list, or a string split like a shell)
    mem, smp      guest RAM (MiB int or "512M"/"2G") and vCPUs
    memfd         RAM is a shared memfd (memory-backend-memfd,share=on +
                  -numa node), which vhost-user back-ends need; False: plain -m
    append        extra kernel command line
    workdir       directory for console.log, qemu.log, qmp.sock; default
                  new_workdir(name)
    cpu, machine  QEMU -cpu (default "max,-erms,-fsrm", env VIO_GUEST_CPU) and
                  -machine (may carry options: "q35,kernel-irqchip=split")
    bios          None/"seabios" (QEMU's default), "qboot", or a file path
    kernel        "vmlinux" (uncompressed PVH, fast), "vmlinuz", or a path
    qmp           also open a QMP socket (see qmp())
    """

    def __init__(self, script: Optional[str] = None,
                 files: Optional[Dict[str, bytes]] = None, *,
                 initrd: Union[str, Path, None] = None,
                 args: Union[Sequence[str], str] = (),
                 mem: Union[int, str] = "512M", smp: int = 2, append: str = "",
                 name: Optional[str] = None, workdir: Union[str, Path, None] = None,
                 cpu: str = DEFAULT_CPU, machine: str = "pc", bios: Optional[str] = None,
                 kernel: str = "vmlinux", qmp: bool = False, memfd: bool = True):
        if initrd is not None and (script is not None or files):
            raise ValueError("give either script/files or initrd")
        self.paths = build_guest()
        self.workdir = Path(workdir) if workdir else new_workdir(name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "console.log"
        self.qemu_log_path = self.workdir / "qemu.log"
        self.qmp_path = self.workdir / "qmp.sock" if qmp else None
        if initrd is None:
            initrd = make_initrd(script if script is not None else "", files,
                                 out=self.workdir / "initrd.cpio.gz") \
                if (script is not None or files) else str(self.paths.initramfs)
        self.initrd = str(initrd)
        self.mem_mib = _mib(mem)
        self.smp = smp
        if isinstance(args, str):
            args = shlex.split(args)
        self.extra_args = list(args)

        if kernel == "vmlinux":
            kpath = self.paths.vmlinux
        elif kernel == "vmlinuz":
            kpath = self.paths.vmlinuz
        else:
            kpath = Path(kernel)
        cmdline = "console=ttyS0 panic=-1 quiet " + BOOT_SPEEDUPS
        if append:
            cmdline += " " + append

        cmd = [QEMU,
               "-accel", "tcg,thread=multi",
               "-machine", machine,
               "-cpu", cpu,
               "-m", "%dM" % self.mem_mib,
               "-smp", str(smp)]
        if memfd:
            cmd += ["-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % self.mem_mib,
                    "-numa", "node,memdev=mem"]
        # -nodefaults: no NIC, VGA, floppy, CD-ROM or monitor unless asked.
        cmd += ["-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot",
                "-chardev", "file,id=vioser0,path=%s" % self.log_path,
                "-serial", "chardev:vioser0",
                "-kernel", str(kpath),
                "-initrd", self.initrd,
                "-append", cmdline]
        if bios == "qboot":
            cmd += ["-bios", QBOOT]
        elif bios and bios != "seabios":
            cmd += ["-bios", bios]
        if self.qmp_path:
            cmd += ["-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        cmd += self.extra_args
        self.cmd = cmd

        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None
        self._t0 = 0.0
        self._t_exit: Optional[float] = None
        self._pos = 0
        self._partial = b""
        self._text: List[str] = []
        self._kv: Dict[str, str] = {}
        self._verdicts: List[str] = []
        self._fail_reason: Optional[str] = None
        self._ready_time: Optional[float] = None
        self._qmp_sock: Optional[socket.socket] = None
        self._qmp_buf = b""

    # ---- lifecycle ------------------------------------------------------

    def start(self) -> "Guest":
        if self.proc is not None:
            raise GuestError("guest already started")
        self.log_path.write_bytes(b"")
        (self.workdir / "qemu.cmd").write_text(" ".join(shlex.quote(c) for c in self.cmd) + "\n")
        self._qlog = open(self.qemu_log_path, "wb")
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._qlog, stderr=subprocess.STDOUT,
                                     cwd=str(self.workdir))
        _live.add(self)
        return self

    def __enter__(self) -> "Guest":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> Optional[int]:
        """SIGKILL QEMU (if still running) and reap it; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap(self.proc.wait())
        self._close()
        return self.exit_code

    def _reap(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self._t_exit = time.monotonic()
            self._read_console()

    def _close(self) -> None:
        if self._qmp_sock:
            self._qmp_sock.close()
            self._qmp_sock = None
        q = getattr(self, "_qlog", None)
        if q and not q.closed:
            q.close()
        _live.discard(self)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        if self.proc is None or self.exit_code is not None:
            return False
        code = self.proc.poll()
        if code is None:
            return True
        self._reap(code)
        self._close()
        return False

    # ---- console parsing ------------------------------------------------

    def _read_console(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        self._pos += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            self._line(raw.decode("utf-8", "replace").rstrip("\r"))

    def _flush_partial(self) -> None:
        if self._partial:
            raw, self._partial = self._partial, b""
            self._line(raw.decode("utf-8", "replace").rstrip("\r"))

    def _line(self, line: str) -> None:
        self._text.append(line)
        m = _LINE_RE.search(line)
        if not m:
            return
        if m.group("ready"):
            if self._ready_time is None:
                self._ready_time = time.monotonic() - self._t0
        elif m.group("verdict"):
            v = m.group("verdict")
            reason = m.group("reason").strip()
            self._verdicts.append(v + (" " + reason if reason else ""))
            if v == "FAIL" and self._fail_reason is None:
                self._fail_reason = reason or "FAIL"
        else:
            self._kv[m.group("key")] = m.group("value").rstrip()

    def console(self) -> str:
        """The console log so far."""
        self._read_console()
        return "\n".join(self._text + ([self._partial.decode("utf-8", "replace")]
                                       if self._partial else []))

    def tail(self, n: int = 40) -> str:
        text = self.console().splitlines()
        out = "--- console.log (last %d lines) ---\n" % n + "\n".join(text[-n:])
        try:
            q = self.qemu_log_path.read_text(errors="replace").strip()
        except OSError:
            q = ""
        if q:
            out += "\n--- qemu.log ---\n" + "\n".join(q.splitlines()[-20:])
        return out

    @property
    def kv(self) -> Dict[str, str]:
        """VIO-KV values seen so far."""
        self._read_console()
        return dict(self._kv)

    # ---- waiting --------------------------------------------------------

    def _poll_until(self, cond, timeout: float, what: str, allow_exit: bool):
        if self.proc is None:
            raise GuestError("guest not started")
        deadline = time.monotonic() + timeout * timeout_scale()
        delay = 0.01
        while True:
            self._read_console()
            r = cond()
            if r:
                return r
            if not self.running():
                self._flush_partial()
                r = cond()
                if r or allow_exit:
                    return r
                raise GuestError("QEMU exited (code %s) while waiting for %s\n%s"
                                 % (self.exit_code, what, self.tail()))
            if time.monotonic() >= deadline:
                self.kill()
                raise GuestTimeout("timeout after %.0f s waiting for %s (guest killed)\n%s"
                                   % (timeout * timeout_scale(), what, self.tail()))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait for VIO-GUEST-READY; returns seconds since start()."""
        return self._poll_until(lambda: self._ready_time, timeout,
                                "VIO-GUEST-READY", allow_exit=False)

    def wait_for(self, pattern: str, timeout: float = 60) -> "re.Match":
        """Wait until a console line matches the regex pattern (re.search)."""
        rx = re.compile(pattern)

        def cond():
            for line in self._text:
                m = rx.search(line)
                if m:
                    return m
            return None
        return self._poll_until(cond, timeout, "console line /%s/" % pattern,
                                allow_exit=False)

    def wait_kv(self, key: str, timeout: float = 60) -> str:
        """Wait for a VIO-KV line with this key; returns its value."""
        return self._poll_until(lambda: (self._kv[key],) if key in self._kv else None,
                                timeout, "VIO-KV %s=" % key, allow_exit=False)[0]

    def wait(self, timeout: float = 300) -> GuestResult:
        """Wait for QEMU to exit (the guest powers off after its test)."""
        self._poll_until(lambda: self.exit_code is not None, timeout,
                         "the guest to power off", allow_exit=True)
        return self.result()

    def result(self) -> GuestResult:
        """The result as of now (complete once QEMU has exited)."""
        self._read_console()
        if self.exit_code is not None:
            self._flush_partial()
        log = "\n".join(self._text)
        passed = bool(self._verdicts) and self._fail_reason is None
        if passed:
            reason = ""
        elif self._fail_reason is not None:
            reason = self._fail_reason
        else:
            reason = self._no_verdict_reason(log)
        return GuestResult(
            passed=passed, reason=reason, kv=dict(self._kv), log=log,
            exit_code=self.exit_code, ready=self._ready_time is not None,
            ready_time=self._ready_time,
            duration=((self._t_exit or time.monotonic()) - self._t0) if self.proc else 0.0,
            verdicts=list(self._verdicts),
            qemu_log=self._qemu_log_text())

    def _qemu_log_text(self) -> str:
        try:
            return self.qemu_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _no_verdict_reason(self, log: str) -> str:
        m = re.search(r"Kernel panic - not syncing:.*", log)
        if m:
            return "no verdict: " + m.group(0).strip()
        if self.exit_code is None:
            return "no verdict yet (guest still running)"
        if self.exit_code < 0:
            return "no verdict: QEMU killed by signal %d" % -self.exit_code
        if self._ready_time is None:
            return "no verdict: guest never became ready (QEMU exit %d)" % self.exit_code
        return "no verdict (QEMU exit %d)" % self.exit_code

    # ---- QMP ------------------------------------------------------------

    def qmp(self, command: str, **arguments) -> dict:
        """Run a QMP command (needs qmp=True); returns its "return" value.

        Raises GuestError on a QMP error.  Events are skipped.
        """
        if not self.qmp_path:
            raise GuestError("Guest was created without qmp=True")
        if self._qmp_sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            deadline = time.monotonic() + 10
            while True:
                try:
                    s.connect(str(self.qmp_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline or not self.running():
                        s.close()
                        raise GuestError("cannot connect to QMP at %s" % self.qmp_path)
                    time.sleep(0.05)
            s.settimeout(30)
            self._qmp_sock = s
            self._qmp_recv()                         # greeting
            self._qmp_send("qmp_capabilities", {})
        return self._qmp_send(command, arguments)

    def _qmp_recv(self) -> dict:
        while b"\n" not in self._qmp_buf:
            chunk = self._qmp_sock.recv(65536)
            if not chunk:
                raise GuestError("QMP connection closed")
            self._qmp_buf += chunk
        line, self._qmp_buf = self._qmp_buf.split(b"\n", 1)
        return json.loads(line)

    def _qmp_send(self, command: str, arguments: dict):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._qmp_sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._qmp_recv()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise GuestError("QMP %s: %s" % (command, r["error"]))
