"""Shared pieces of the bench/ scripts: set-up (packages, the release
build), back-end processes, `vio bench` runs, medians, and the CSV, Markdown
and gnuplot PNG each script writes under build/bench/.

Not a test helper: nothing here asserts timings; it only measures."""

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "bench"


def setup(extra_pkgs=()):
    """Install what is missing (as root, like make test) and build vio."""
    subprocess.run([str(REPO / "scripts" / "deps.sh"), "bench"], check=True)
    subprocess.run(["make", "-s", "-C", str(REPO), "release"], check=True,
                   stdout=subprocess.DEVNULL)
    OUT.mkdir(parents=True, exist_ok=True)
    return str(REPO / "build" / "release" / "vio")


def need(cmd, pkg):
    p = shutil.which(cmd)
    if not p:
        sys.exit("bench: %s not found (Debian package %s; scripts/deps.sh bench installs it)"
                 % (cmd, pkg))
    return p


def machine():
    cpu = "?"
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d CPUs (%s), kernel %s" % (platform.node() or "host", os.cpu_count() or 0, cpu,
                                            platform.release())


def pinning():
    """(driver CPUs, back-end CPUs) for taskset, or (None, None) on a host
    with one CPU. Every back-end gets the same CPU of its own (the last
    one), and the driver the others, so no system wins or loses by where
    the scheduler happened to put its threads."""
    n = os.cpu_count() or 1
    if n < 2 or not shutil.which("taskset"):
        return None, None
    return "0-%d" % (n - 2) if n > 2 else "0", str(n - 1)


def pinned(args, cpus):
    return (["taskset", "-c", cpus] + list(args)) if cpus else list(args)


class Proc:
    """A back-end process with its output in a log file; waits for @sockets."""

    def __init__(self, name, args, sockets, workdir, stdin_pipe=False, cpus=None):
        args = pinned(args, cpus)
        self.name = name
        self.log_path = Path(workdir) / (name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL)
        deadline = time.time() + 60
        for s in sockets:
            while not os.path.exists(s):
                if self.proc.poll() is not None:
                    sys.exit("bench: %s exited %d:\n%s" % (name, self.proc.returncode,
                                                           self.tail()))
                if time.time() > deadline:
                    self.stop()
                    sys.exit("bench: %s did not create %s:\n%s" % (name, s, self.tail()))
                time.sleep(0.05)
        time.sleep(0.2)

    @property
    def pid(self):
        return self.proc.pid

    def tail(self, n=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def vio_bench(vio, args, timeout=300, cpus=None):
    """Run `vio bench ARGS --json`; returns the result dict (exits on failure)."""
    p = subprocess.run(pinned([vio, "bench"] + [str(a) for a in args] + ["--json"], cpus),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.exit("bench: vio bench %s failed (%d):\n%s\n%s" % (" ".join(map(str, args)),
                                                             p.returncode, out,
                                                             p.stderr.decode(errors="replace")))
    return json.loads(lines[0])


def free_sock_dir(name):
    d = Path("/tmp") / ("vio-bench-%s-%d" % (name, os.getpid()))
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    return d


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(fmt_csv(r.get(h)) for h in header) + "\n")


def fmt_csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


def fmt(v, digits=3):
    if v is None or v != v:
        return "-"
    if abs(v) >= 1e6:
        return "%.2fM" % (v / 1e6)
    if abs(v) >= 1e4:
        return "%.1fk" % (v / 1e3)
    return ("%%.%dg" % digits) % v


def plot_bars(png, title, ylabel, groups, series, values, logscale=False):
    """Clustered bars: one cluster per group (workload), one bar per series
    (system); values[(group, series)] -> number."""
    gp = shutil.which("gnuplot")
    if not gp:
        print("bench: gnuplot not found; no plot written (scripts/deps.sh bench installs it)",
              file=sys.stderr)
        return False
    dat = Path(str(png) + ".dat")
    with open(dat, "w") as f:
        f.write("group " + " ".join('"%s"' % s for s in series) + "\n")
        for g in groups:
            vals = []
            for s in series:
                v = values.get((g, s))
                vals.append("%.6g" % v if v is not None and v == v else "NaN")
            f.write('"%s" %s\n' % (g, " ".join(vals)))
    script = """
set terminal pngcairo size 1100,560 noenhanced font ",10"
set output '{png}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -20
set key top left
set grid ytics
{log}
plot for [i=2:{n}] '{dat}' using i:xtic(1) title columnheader(i)
""".format(png=png, title=title, ylabel=ylabel, n=len(series) + 1, dat=dat,
           log="set logscale y" if logscale else "set yrange [0:*]")
    r = subprocess.run([gp], input=script.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("bench: gnuplot failed: %s" % r.stderr.decode(errors="replace"), file=sys.stderr)
        return False
    return True
