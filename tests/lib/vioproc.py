"""Run `vio serve` from end-to-end tests and talk to its control socket.

    with VioServe(["--blk", "id=d0,path=%s,socket=%s" % (img, sock)], name="t") as vs:
        vs.wait_socket(sock)
        ... start a guest ...
        stats = vs.ctl("device.stats", {"id": "d0"})
    # leaving the block sends SIGTERM, waits, and fails the test if vio
    # exited non-zero or its log shows a sanitizer report.

The binary is $VIO_BIN, else build/asan/vio (sanitizers catch memory errors
that real guests provoke), else build/release/vio.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer")


class VioError(Exception):
    pass


def vio_bin() -> str:
    env = os.environ.get("VIO_BIN")
    if env:
        return env
    for tree in ("asan", "release"):
        p = REPO / "build" / tree / "vio"
        if p.exists():
            return str(p)
    raise VioError("no vio binary: run `make build` (looked in build/asan and build/release)")


def rpc_call(path: str, method: str, params=None, timeout: float = 10.0):
    """One JSON-RPC call; returns the result or raises VioError(error)."""
    req = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        req["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise VioError("control socket closed without a reply to %s" % method)
            buf += chunk
    resp = json.loads(buf.split(b"\n", 1)[0])
    if "error" in resp:
        raise VioError("%s: %s" % (method, resp["error"].get("message")))
    return resp["result"]


class VioServe:
    def __init__(self, args: List[str], name: str = "vio", workdir: Optional[Path] = None,
                 ctl: bool = True, env: Optional[dict] = None):
        base = Path(os.environ.get("VIO_TEST_WORKDIR", REPO / "build" / "test-work"))
        self.workdir = Path(workdir) if workdir else base / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ctl_path = str(self.workdir / "ctl.sock") if ctl else None
        self.log_path = self.workdir / "vio.log"
        self.args = [vio_bin(), "serve"] + list(args)
        if self.ctl_path:
            self.args += ["--ctl", self.ctl_path]
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=66")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=67")
        if env:
            self.env.update(env)
        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None

    def start(self) -> "VioServe":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        if self.ctl_path:
            self.wait_socket(self.ctl_path)
        return self

    def __enter__(self) -> "VioServe":
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop(check=exc_type is None)
        finally:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_socket(self, path: str, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path):
                return
            if not self.alive():
                raise VioError("vio serve exited (%s) before %s appeared:\n%s"
                               % (self.proc.returncode if self.proc else None, path, self.tail()))
            time.sleep(0.02)
        raise VioError("%s did not appear within %.0fs:\n%s" % (path, timeout, self.tail()))

    def ctl(self, method: str, params=None):
        if not self.ctl_path:
            raise VioError("started without a control socket")
        return rpc_call(self.ctl_path, method, params)

    def stats(self, dev_id: str) -> dict:
        return self.ctl("device.stats", {"id": dev_id})

    def sanitizer_report(self) -> Optional[str]:
        text = self.log()
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, check: bool = True) -> int:
        """Signal vio, wait for it, and (with check) insist on a clean exit."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise VioError("vio serve did not exit within %.0fs of signal %d:\n%s"
                               % (timeout, sig, self.tail()))
        self.exit_code = self.proc.returncode
        self._log.close()
        report = self.sanitizer_report()
        if check and report:
            raise VioError("sanitizer report in vio's log:\n" + report)
        if check and self.exit_code != 0:
            raise VioError("vio serve exited with %d:\n%s" % (self.exit_code, self.tail()))
        return self.exit_code
