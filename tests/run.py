#!/usr/bin/env python3
"""vio's whole test suite, run by `make test` (after the build).

Stages, in order:
  unit   every cmocka case of the unit-test binaries in build/asan (ASan+UBSan);
         those that need /dev/kvm run inside a rig L1 when this host has none
  fuzz   each libFuzzer target in build/fuzz over its seed corpus plus a short
         random run
  host   end-to-end tests with host processes as peers (tests/host/test_*.py)
  qemu   end-to-end tests with QEMU guests as the real client (tests/qemu/test_*.py)
  rig    end-to-end tests of vio run inside the nested rig: an L1 Linux under QEMU
         TCG whose /dev/kvm runs vio run's L2 guests (tests/rig/test_*.py)

Each end-to-end test is a function test_*() in one of those files; it passes
if it returns and fails if it raises. The last line is "N passed, N failed".

  tests/run.py [--stage unit,fuzz,host,qemu] [-k SUBSTRING] [--list]
"""

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

STAGES = ["unit", "fuzz", "host", "qemu", "rig"]
E2E_TIMEOUT = int(os.environ.get("VIO_TEST_TIMEOUT", "600"))
FUZZ_SECONDS = int(os.environ.get("VIO_FUZZ_SECONDS", "20"))


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def ok(self, name, secs=None):
        self.passed += 1
        print("PASS %s%s" % (name, "" if secs is None else " (%.1fs)" % secs), flush=True)

    def fail(self, name, why, secs=None):
        self.failed.append(name)
        print("FAIL %s%s: %s" % (name, "" if secs is None else " (%.1fs)" % secs, why),
              flush=True)


# Unit-test binaries that create VMs through /dev/kvm. On a host without a
# usable /dev/kvm they run inside the nested rig's L1, whose KVM works.
KVM_UNIT = ("test_boot", "test_e1000", "test_kvm", "test_pci", "test_virtio_pci")
UNIT_ENV = dict(CMOCKA_MESSAGE_OUTPUT="TAP", ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


# Seconds one unit-test binary may take inside the rig (TCG-emulated L1), and
# how long its L1 may print nothing before it counts as wedged.
RIG_UNIT_TIMEOUT = 900
RIG_UNIT_SILENCE = 120


def host_kvm_ok():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def run_unit(res, only):
    bindir = REPO / "build" / "asan" / "tests" / "unit"
    src = sorted(p.stem for p in (REPO / "tests" / "unit").glob("test_*.c"))
    if not src:
        return
    in_rig = [] if host_kvm_ok() else [n for n in src if n in KVM_UNIT]
    for name in src:
        if only and only not in name:
            continue
        exe = bindir / name
        if not exe.exists():
            res.fail("unit/" + name, "binary %s missing: the ASan build failed or is stale" % exe)
            continue
        if name in in_rig:
            continue
        t0 = time.time()
        p = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=dict(os.environ, **UNIT_ENV), timeout=600)
        unit_results(res, name, p.stdout.decode(errors="replace"), p.returncode, t0)
    names = [n for n in in_rig if (not only or only in n) and (bindir / n).exists()]
    if names:
        run_unit_in_rig(res, names, bindir)


def run_unit_in_rig(res, names, bindir):
    """Run the KVM unit tests inside rig L1s (this host has no usable
    /dev/kvm) and report their cases like the others. One L1 per binary,
    with one vCPU: with two, QEMU TCG's nested SVM wedged the L1 (no output
    at all from then on) within minutes every time test_virtio_pci started
    its many small VMs; with one it runs in seconds. An L1 silent for
    RIG_UNIT_SILENCE seconds anyway is killed and the binary run once more
    in a fresh one."""
    from rig import Rig
    print("   (no usable /dev/kvm here: %s run inside the nested rig's L1)" % ", ".join(names),
          flush=True)
    guest = REPO / "build" / "guest"
    files = {"/repo/build/guest/%s" % f: guest / f for f in ("vmlinuz", "vmlinux",
                                                            "initramfs.cpio.gz")
             if (guest / f).exists()}
    env = " ".join("%s=%s" % kv for kv in UNIT_ENV.items())
    for n in names:
        script = ('echo "VIO-UNIT-BEGIN %(n)s"; %(env)s VIO_REPO=/repo /rig/unit/%(n)s 2>&1; '
                  'echo "VIO-UNIT-END %(n)s $?"\npass\n' % {"n": n, "env": env})
        t0 = time.time()
        why = ""
        for attempt in (1, 2):
            try:
                log = rig_unit_once(Rig, script, files, "%s=/rig/unit/%s" % (bindir / n, n),
                                    "unit-kvm-%s-%d" % (n, attempt))
            except Exception as e:  # noqa: B902 - report, do not stop the suite
                why = "the rig could not run it: %s" % e
                continue
            lines = log.splitlines()
            begin = [i for i, ln in enumerate(lines) if ln.strip() == "VIO-UNIT-BEGIN " + n]
            end = [(i, ln) for i, ln in enumerate(lines) if ln.startswith("VIO-UNIT-END %s " % n)]
            if begin and end:
                out = "\n".join(lines[begin[0] + 1:end[0][0]])
                unit_results(res, n, out, int(end[0][1].split()[-1]), t0)
                break
            why = "no complete run in the rig's log:\n" + "\n".join(lines[-40:])
            print("   (%s: L1 run %d did not finish; %s)" % (
                n, attempt, "trying once more" if attempt == 1 else "giving up"), flush=True)
        else:
            res.fail("unit/" + n, why, time.time() - t0)


def rig_unit_once(Rig, script, files, bin_spec, name):
    """Boot one L1 for @script; returns its console log once it powers off,
    or when it has been silent for RIG_UNIT_SILENCE s (killed then)."""
    # 6G: test_kvm makes a VM with 4 GiB of RAM (memory above 4G), which
    # must fit in L1's. iasl: test_boot checks our AML with it.
    bins = [bin_spec] + (["/usr/bin/iasl"] if os.path.exists("/usr/bin/iasl") else [])
    with Rig(script, files=files, bins=bins, vio=False, name=name, smp=1, mem="6G") as rig:
        size, quiet_since, start = -1, time.time(), time.time()
        while rig.proc.poll() is None:
            time.sleep(2)
            try:
                now_size = rig.log_path.stat().st_size
            except OSError:
                now_size = 0
            if now_size != size:
                size, quiet_since = now_size, time.time()
            elif time.time() - quiet_since > RIG_UNIT_SILENCE:
                rig.kill()
                break
            if time.time() - start > RIG_UNIT_TIMEOUT:
                rig.kill()
                break
        try:
            return rig.log_path.read_text(errors="replace")
        except OSError:
            return ""


def unit_results(res, name, out, returncode, t0):
    """Report the TAP cases of one unit-test binary's output."""
    plan, seen, case_failed = None, 0, False
    for line in out.splitlines():
        if line.startswith("1.."):
            plan = int(line[3:])
        elif line.startswith("ok ") or line.startswith("not ok "):
            seen += 1
            case = line.split(" - ", 1)[1].strip() if " - " in line else line
            tname = "unit/%s/%s" % (name, case)
            if line.startswith("ok "):
                res.ok(tname)
            else:
                case_failed = True
                res.fail(tname, "see the output below")
                print(out, flush=True)
    if plan is None or seen != plan or (returncode != 0 and not case_failed):
        res.fail("unit/" + name, "exited %d after %d of %s cases:\n%s"
                 % (returncode, seen, plan, out[-4000:]), time.time() - t0)


def run_fuzz(res, only):
    fuzzdir = REPO / "build" / "fuzz" / "fuzz"
    targets = sorted(p.stem for p in (REPO / "fuzz").glob("fuzz_*.c"))
    for name in targets:
        if only and only not in name:
            continue
        exe = fuzzdir / name
        tname = "fuzz/" + name
        if not exe.exists():
            res.fail(tname, "binary %s missing: the clang fuzz build failed" % exe)
            continue
        corpus = REPO / "fuzz" / "corpus" / name
        work = REPO / "build" / "fuzz-work" / name
        work.mkdir(parents=True, exist_ok=True)
        args = [str(exe), "-max_total_time=%d" % FUZZ_SECONDS, "-timeout=10",
                "-rss_limit_mb=2048", "-print_final_stats=1", str(work)]
        if corpus.is_dir():
            args.append(str(corpus))
        t0 = time.time()
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=FUZZ_SECONDS * 4 + 120, cwd=str(work))
        out = p.stdout.decode(errors="replace")
        if p.returncode == 0:
            res.ok(tname, time.time() - t0)
        else:
            res.fail(tname, "libFuzzer exited %d:\n%s" % (p.returncode, out[-4000:]),
                     time.time() - t0)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout("test took longer than %ds" % E2E_TIMEOUT)


def run_e2e(res, stage, only, listing=False):
    files = sorted((REPO / "tests" / stage).glob("test_*.py"))
    signal.signal(signal.SIGALRM, _alarm)
    for f in files:
        spec = importlib.util.spec_from_file_location("vio_%s_%s" % (stage, f.stem), f)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            res.fail("%s/%s" % (stage, f.stem), "import failed:\n" + traceback.format_exc())
            continue
        tests = [(n, getattr(mod, n)) for n in mod.__dict__
                 if n.startswith("test_") and callable(getattr(mod, n))]
        for n, fn in tests:
            tname = "%s/%s/%s" % (stage, f.stem, n)
            if only and only not in tname:
                continue
            if listing:
                print(tname)
                continue
            t0 = time.time()
            signal.alarm(E2E_TIMEOUT)
            try:
                fn()
                signal.alarm(0)
                res.ok(tname, time.time() - t0)
            except BaseException as e:  # noqa: B902 - a test may raise anything
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                res.fail(tname, "%s\n%s" % (e, traceback.format_exc()), time.time() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", default=",".join(STAGES))
    ap.add_argument("-k", dest="only", default=None, help="run tests whose name contains this")
    ap.add_argument("--list", action="store_true", help="list end-to-end tests and exit")
    a = ap.parse_args()
    stages = [s for s in a.stage.split(",") if s]
    for s in stages:
        if s not in STAGES:
            ap.error("unknown stage %s (stages: %s)" % (s, ", ".join(STAGES)))
    res = Results()
    t0 = time.time()
    if a.list:
        for s in ("host", "qemu", "rig"):
            if s in stages:
                run_e2e(res, s, a.only, listing=True)
        return 0
    for s in stages:
        print("== %s ==" % s, flush=True)
        if s == "unit":
            run_unit(res, a.only)
        elif s == "fuzz":
            run_fuzz(res, a.only)
        else:
            run_e2e(res, s, a.only)
    if res.failed:
        print("\nfailed:\n  " + "\n  ".join(res.failed))
    print("\ntotal time %.0fs" % (time.time() - t0))
    print("%d passed, %d failed" % (res.passed, len(res.failed)))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
