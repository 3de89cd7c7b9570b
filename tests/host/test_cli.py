"""End-to-end: bad command lines and bad control requests to a real vio.

Every bad command line must end vio with a non-zero status and a message
that names the problem, before anything is served; every bad JSON-RPC
request must get an error reply while the server keeps serving.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from guest import new_workdir  # noqa: E402
from vioproc import VioServe, rpc_call, vio_bin  # noqa: E402


def run_vio(*args, timeout=20):
    p = subprocess.run([vio_bin()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_refusal(args, words):
    code, out, err = run_vio(*args)
    assert code != 0, "vio %s succeeded:\n%s%s" % (" ".join(args), out, err)
    for w in words:
        assert w in err, "vio %s: expected %r in the message, got:\n%s" % (" ".join(args), w, err)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err


def test_serve_bad_command_lines():
    w = new_workdir("cli")
    img = w / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    sock = str(w / "x.sock")
    empty = w / "empty.img"
    empty.write_bytes(b"")
    cases = [
        ([], ["nothing to serve"]),
        (["--blk", "path=%s,socket=%s" % (img, sock)], ["id="]),
        (["--blk", "id=d0,path=%s" % img], ["socket="]),
        (["--blk", "id=d0,socket=%s" % sock], ["path="]),
        (["--blk", "id=d0,path=%s,socket=%s,colour=blue" % (img, sock)],
         ["unknown option 'colour'"]),
        (["--blk", "id=d0,path=%s,socket=%s,queues=0" % (img, sock)], ["queues=0"]),
        (["--blk", "id=d0,path=%s,socket=%s,queues=many" % (img, sock)], ["queues=many"]),
        (["--blk", "id=d0,path=%s,socket=%s,queues=100" % (img, sock)], ["queues=100"]),
        (["--blk", "id=d0,path=%s,socket=%s,queue-size=100" % (img, sock)],
         ["power of two"]),
        (["--blk", "id=d0,path=%s,socket=%s,readonly=maybe" % (img, sock)], ["readonly=maybe"]),
        (["--blk", "id=d0,path=%s,socket=%s,id=d1" % (img, sock)], ["given twice"]),
        (["--blk", "id=d/0,path=%s,socket=%s" % (img, sock)], ["id="]),
        (["--blk", "id=d0,path=/nonexistent/disk.img,socket=%s" % sock],
         ["/nonexistent/disk.img", "No such file"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (empty, sock)], ["truncate"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (w, sock)], ["Is a directory"]),
        (["--blk", "id=d0,path=/dev/null,socket=%s" % sock], ["not a regular file"]),
        (["--blk", "id=d0,path=%s,socket=%s,blksize=1000" % (img, sock)], ["blksize"]),
        (["--blk", "id=d0,backend=null,path=%s,socket=%s" % (img, sock)], ["no path"]),
        (["--blk", "id=d0,backend=tape,socket=%s" % sock], ["backend=tape"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, "/tmp/" + "x" * 120)], ["socket="]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, sock),
          "--blk", "id=d0,path=%s,socket=%s" % (img, sock + "2")], ["already used"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, sock), "--workers", "0"], ["--workers"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, sock), "--log-level", "loud"],
         ["--log-level"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, sock), "stray"], ["unexpected argument"]),
        (["--blk", "id=d0,path=%s,socket=%s" % (img, str(img))], ["not a socket"]),
    ]
    for args, words in cases:
        expect_refusal(["serve"] + args, words)
    # The regular file named as a socket was not replaced.
    assert img.stat().st_size == 1 << 20


def test_top_level_and_ctl_usage():
    code, out, err = run_vio()
    assert code == 2 and "usage" in err
    code, out, err = run_vio("frobnicate")
    assert code == 2 and "unknown command" in err
    code, out, err = run_vio("version")
    assert code == 0 and out.startswith("vio ")
    code, out, err = run_vio("serve", "--help")
    assert code == 0 and "--blk" in out
    code, out, err = run_vio("ctl", "-s", "/nonexistent/ctl.sock", "list")
    assert code == 2 and "cannot talk to /nonexistent/ctl.sock" in err, err


def raw_lines(path, lines):
    """Send raw request lines, return the parsed reply lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        for line in lines:
            s.sendall(line)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(x) for x in buf.split(b"\n") if x.strip()]


def test_control_socket_bad_requests():
    w = new_workdir("ctl-bad")
    img = w / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    with VioServe(["--blk", "id=d0,path=%s,socket=%s" % (img, w / "d0.sock")],
                  workdir=w / "vio") as vs:
        replies = raw_lines(vs.ctl_path, [
            b"this is not json\n",
            b'{"jsonrpc":"2.0","method":"no.such","id":1}\n',
            b'{"jsonrpc":"1.0","method":"device.list","id":2}\n',
            b'{"jsonrpc":"2.0","method":"device.stats","params":{"id":"nope"},"id":3}\n',
            b'{"jsonrpc":"2.0","method":"device.stats","params":{"id":5},"id":4}\n',
            b'{"jsonrpc":"2.0","method":"device.stats","params":7,"id":5}\n',
            b'[]\n',
            b'{"jsonrpc":"2.0","method":"device.list"}\n',  # notification: no reply
            b'[{"jsonrpc":"2.0","method":"server.info","id":6},{"bad":1}]\n',
            b'{"jsonrpc":"2.0","method":"device.list","id":7}\n',
        ])
        codes = [r.get("error", {}).get("code") for r in replies if isinstance(r, dict)]
        assert codes[:7] == [-32700, -32601, -32600, -32001, -32602, -32600, -32600], replies
        batch = [r for r in replies if isinstance(r, list)]
        assert len(batch) == 1 and batch[0][0]["result"]["program"] == "vio serve" \
            and batch[0][1]["error"]["code"] == -32600, batch
        assert replies[-1]["id"] == 7 and replies[-1]["result"][0]["id"] == "d0"
        # An over-long line closes that client only.
        try:
            raw_lines(vs.ctl_path, [b"[" * 70000 + b"\n"])
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert rpc_call(vs.ctl_path, "server.info")["devices"] == 1
        # vio ctl reports server errors with status 1.
        code, out, err = run_vio("ctl", "-s", vs.ctl_path, "stats", "nope")
        assert code == 1 and "no device 'nope'" in err, (code, out, err)
        code, out, err = run_vio("ctl", "-s", vs.ctl_path, "stats", "d0")
        assert code == 0 and json.loads(out)["id"] == "d0", out
        code, out, err = run_vio("ctl", "-s", vs.ctl_path, "device.stats", "{bad json")
        assert code == 2 and "not JSON" in err, err
    assert not os.path.exists(vs.ctl_path), "the control socket was left behind"
