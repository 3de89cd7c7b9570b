"""End-to-end: the uplinks of vio serve's switch (issue 4) carry real guest
traffic. QEMU TCG guests with the stock virtio_net driver sit on vhost-user
ports of vio serve (the ASan build); the far ends are the host itself, a
second vio serve, or Linux's own vxlan driver.

What passing proves:

- NAT (slirp uplink): a guest gets 10.0.2.15 and its default route by DHCP
  (busybox udhcpc) from the switch's slirp port; it downloads 3 MiB from an
  HTTP server listening on the host's 127.0.0.1 through the gateway
  10.0.2.2 (md5 and size match); and a hostfwd rule given in the uplink spec
  forwards the host's 127.0.0.1:PORT into the guest, where busybox httpd
  serves 2 MiB that the test reads intact with urllib. The switch counters
  show those bytes crossing the NAT port, with nothing spoofed or refused.
- VXLAN between two vio serve processes, each in its own network namespace,
  joined by a veth pair: two guests, one per switch, ping each other both
  ways and send each other 4 MiB with busybox nc (md5 matches on both
  ends). Frames bigger than the veth's MTU once encapsulated (full-size TCP
  segments, the switch cutting the guests' TSO super-frames for the
  uplink) cross the tunnel as fragmented UDP. Both tunnel ports count the
  traffic and no datagram was refused (wrong VNI, source, header, size).
- VXLAN interoperability: one vio serve switch against a Linux `vxlan`
  interface (VNI 42, port 4789) in another namespace. The guest and the
  Linux side ping each other, the Linux side downloads 2 MiB from the
  guest's httpd and the guest downloads 2 MiB from a Python HTTP server on
  the Linux side, both intact. Linux's interface has MTU 1450, the guest
  1500: TCP works through the MSS the two ends agree on. The Linux side's
  veth has transmit checksum offload turned off, standing in for a
  physical NIC that fills in checksums itself: with the offload on, a veth
  hands the inner TCP checksums of Linux's VXLAN packets unfilled to any
  user-space tunnel end (vio or another), and the guest drops those
  segments.

What it does not prove: DNS through the NAT (there is no resolver to reach
here), UDP port forwards, IPv6 tunnels, the TAP uplink (no /dev/net/tun on
the host: see the rig), VLANs on uplinks, behaviour under loss or at speed
(the transfers are a few MiB under TCG; nothing here is timed).

Needs root (network namespaces, veth), iproute2 and busybox-static on the
host; a missing one fails the test with a message saying so.
"""

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE))

from guest import Guest, new_workdir, timeout_scale  # noqa: E402
from test_net import MACS, NET_SH, net_args, port_spec, ports, wait_all  # noqa: E402
from vioproc import VioServe  # noqa: E402

NETNS_PREFIX = "vio-upl-"
DROP_KEYS = ("drop_short", "drop_bad_header", "drop_wrong_vni", "drop_wrong_source",
             "drop_too_big", "send_error")


# --------------------------------------------------------------------------
# Host-side helpers

def _require(root=False, tools=()):
    """Fail (not skip) when a prerequisite is missing."""
    missing = []
    if root and os.geteuid() != 0:
        missing.append("root privileges (the test creates network namespaces and veth pairs)")
    for tool, pkg in tools:
        if shutil.which(tool) is None:
            missing.append("the `%s` command (Debian package %s; scripts/deps.sh installs it)"
                           % (tool, pkg))
    if missing:
        raise AssertionError("missing prerequisite: " + "; ".join(missing))


def _run(args, timeout=30, check=True):
    """Run a command; returns its output. A failure (or, with check=False,
    a timeout, reported in the returned text) never goes unnoticed."""
    args = [str(a) for a in args]
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        msg = "TIMEOUT: `%s` did not finish within %.0f s; output so far:\n%s" % (
            " ".join(args[:6]), timeout, out)
        if check:
            raise AssertionError(msg) from None
        return msg
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError("`%s` exited %d:\n%s" % (" ".join(map(str, args)),
                                                      p.returncode, out))
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _md5(data):
    return hashlib.md5(data).hexdigest()


def _busybox():
    return shutil.which("busybox") or "/bin/busybox"


def _reap_stale_netns():
    """Delete namespaces this file made in runs whose process is gone."""
    try:
        out = _run(["ip", "netns", "list"], check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    for line in out.splitlines():
        name = line.split(" ", 1)[0]
        m = re.match(re.escape(NETNS_PREFIX) + r"(\d+)-", name)
        if m and not Path("/proc", m.group(1)).exists():
            _run(["ip", "netns", "del", name], check=False)


class Netns:
    """A network namespace named after this process and a tag, so a leftover
    from a crashed run never collides with the next one."""

    def __init__(self, tag):
        self.name = "%s%d-%s" % (NETNS_PREFIX, os.getpid(), tag)
        self.created = False

    def create(self):
        _run(["ip", "netns", "del", self.name], check=False)
        _run(["ip", "netns", "add", self.name])
        self.created = True
        self.ip("link", "set", "lo", "up")
        return self

    def ip(self, *args):
        return _run(["ip", "-n", self.name] + list(args))

    def cmd(self, argv):
        """argv run inside the namespace (ip netns exec execs it: same pid)."""
        return ["ip", "netns", "exec", self.name] + [str(a) for a in argv]

    def run(self, argv, timeout=30, check=True):
        return _run(self.cmd(argv), timeout=timeout, check=check)

    def tx_csum_off(self, dev):
        """`ethtool -K DEV tx off` without ethtool (not a dependency): the
        legacy ETHTOOL_STXCSUM request through SIOCETHTOOL, made inside the
        namespace."""
        self.run([sys.executable, "-c", TX_CSUM_OFF_PY, dev])

    def ip_snmp(self):
        """The namespace's IP counters (/proc/net/snmp "Ip:" lines)."""
        rows = [ln.split() for ln in self.run(["cat", "/proc/net/snmp"]).splitlines()
                if ln.startswith("Ip:")]
        return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:])}

    def link_stats(self, dev):
        info = json.loads(self.ip("-j", "-s", "link", "show", "dev", dev))[0]
        return info["stats64"]

    def delete(self):
        if self.created:
            # Deleting the namespace also destroys the veth end and any
            # vxlan device in it.
            _run(["ip", "netns", "del", self.name], check=False)
            self.created = False


def _veth(a, a_addr, b, b_addr):
    """A veth pair with one end ("va") in namespace a and the other ("vb")
    in namespace b, both up with the given addresses."""
    _run(["ip", "link", "add", "va", "netns", a.name, "type", "veth",
          "peer", "name", "vb", "netns", b.name])
    a.ip("addr", "add", a_addr, "dev", "va")
    b.ip("addr", "add", b_addr, "dev", "vb")
    a.ip("link", "set", "va", "up")
    b.ip("link", "set", "vb", "up")
    # The underlay must work before the tunnel can: say so plainly if not.
    peer = b_addr.split("/")[0]
    out = a.run([_busybox(), "ping", "-c", "1", "-W", "5", peer], check=False)
    assert "1 packets received" in out, "underlay %s -> %s does not work:\n%s" % (
        a.name, peer, out)


class NetnsVioServe(VioServe):
    """vio serve started inside a network namespace. `ip netns exec` execs
    vio in place, so the pid (signals, exit code) is vio's own; the vhost-user
    and control sockets are paths on the shared file system, reachable from
    QEMU and from this process in the root namespace."""

    def __init__(self, netns, args, **kw):
        super().__init__(args, **kw)
        self.args = netns.cmd(self.args)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class HostHTTP:
    """A static HTTP server on the host's 127.0.0.1 (in this process)."""

    def __init__(self, root):
        self.srv = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()


def _http_get(url, tries=30):
    """GET url (retrying while the far end comes up); returns the body."""
    err = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=60 * timeout_scale()) as r:
                return r.read()
        except (urllib.error.URLError, OSError) as e:
            err = e
            time.sleep(1)
    raise AssertionError("GET %s failed %d times, last: %s" % (url, tries, err))


# Run inside a namespace: turn off transmit checksum offload on a device.
TX_CSUM_OFF_PY = r"""
import array, fcntl, socket, struct, sys
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17
val = array.array("B", struct.pack("II", ETHTOOL_STXCSUM, 0))   # struct ethtool_value
ifr = struct.pack("16sP", sys.argv[1].encode(), val.buffer_info()[0])
fcntl.ioctl(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), SIOCETHTOOL, ifr)
"""

# Run inside a namespace: GET a URL, print "SIZE MD5".
FETCH_PY = r"""
import hashlib, sys, time, urllib.request
err = None
for _ in range(30):
    try:
        d = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read()
        print(len(d), hashlib.md5(d).hexdigest())
        sys.exit(0)
    except Exception as e:
        err = e
        time.sleep(1)
print("ERROR", err)
sys.exit(1)
"""


def _check_clean(st, what):
    for pid, c in st.items():
        assert c["tx_drop_spoof"] == 0 and c["tx_drop_bad"] == 0, (what, pid, c)
    for pid, c in st.items():
        if c["kind"] == "vxlan":
            for k in DROP_KEYS:
                assert c[k] == 0, "%s: vxlan port %s counted %s=%d: %s" % (
                    what, pid, k, c[k], c)


# --------------------------------------------------------------------------
# Guest-side helpers

# dhcp_up: eth0 up and configured by busybox udhcpc with a minimal script.
DHCP_SH = r"""
dhcp_up() {
    wait_for_dev /sys/class/net/eth0 20
    must ip link set eth0 up
    cat >/tmp/dhcp.sh <<'EOF'
#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "$ip/$mask router=$router dns=$dns" >/tmp/lease
    ;;
esac
exit 0
EOF
    chmod +x /tmp/dhcp.sh
    udhcpc -i eth0 -s /tmp/dhcp.sh -q -n -t 10 -T 3 >/tmp/udhcpc.log 2>&1 ||
        fail "udhcpc got no lease: $(tr '\n' ' ' </tmp/udhcpc.log)"
}
"""

# Stay up until the host creates a file on an HTTP server the guest reaches.
WAIT_HOST_SH = r"""
wait_host() {  # wait_host URL SECONDS
    _i=0
    until wget -q -O /tmp/host-done "$1" 2>/dev/null; do
        _i=$((_i + 1)); [ $_i -ge "$2" ] && fail "the host never said it was done ($1)"
        sleep 1
    done
}
"""


def _sub(script, **values):
    for k, v in values.items():
        script = script.replace("@%s@" % k, str(v))
    assert "@" not in script.replace("$@", ""), script
    return script


# --------------------------------------------------------------------------
# 1. NAT

NAT_GUEST = NET_SH + DHCP_SH + WAIT_HOST_SH + r"""
dhcp_up
kv lease "$(cat /tmp/lease)"
kv addr "$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
kv gateway "$(ip route show default | awk '{print $3}')"
# (a) out through the NAT: 10.0.2.2 is the host's loopback.
i=0
until wget -q -O /tmp/down http://10.0.2.2:@HTTP@/blob; do
    i=$((i + 1)); [ $i -ge 30 ] && fail "wget http://10.0.2.2:@HTTP@/blob failed"; sleep 1
done
kv down_size "$(wc -c </tmp/down)"
kv down_md5 "$(md5sum </tmp/down | cut -d' ' -f1)"
# (b) in through hostfwd: the host reads what httpd serves on port 8080.
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/served bs=64k count=32 2>/dev/null
kv served_md5 "$(md5sum </tmp/www/served | cut -d' ' -f1)"
httpd -p 8080 -h /tmp/www || fail "httpd did not start"
kv httpd_up yes
wait_host http://10.0.2.2:@HTTP@/done 240
pass
"""


def test_nat_dhcp_download_and_hostfwd():
    """DHCP from the slirp uplink, a 3 MiB download from the host's
    127.0.0.1 through the NAT, and a 2 MiB fetch from the host through a
    hostfwd rule into the guest's httpd."""
    _require()
    w = new_workdir("net-uplink-nat")
    www = w / "www"
    www.mkdir()
    blob = os.urandom(3 << 20)
    (www / "blob").write_bytes(blob)
    sock = str(w / "p0.sock")
    hostport = _free_port()
    with HostHTTP(www) as web:
        args = ["--net", port_spec("p0", sock, MACS[0]),
                "--uplink", "type=slirp,id=nat,hostfwd=tcp:127.0.0.1:%d-:8080" % hostport]
        script = _sub(NAT_GUEST, HTTP=web.port)
        with VioServe(args, workdir=w / "vio") as vs:
            with Guest(script, args=net_args(sock, MACS[0]), name="net-uplink-nat-g",
                       smp=1) as g:
                g.wait_kv("httpd_up", 240)
                served = _http_get("http://127.0.0.1:%d/served" % hostport)
                (www / "done").write_bytes(b"ok\n")
                r = g.wait(120)
            st = ports(vs)
            assert r.passed, "guest failed: %s\n%s\n--- vio ---\n%s" % (
                r.reason, r.log[-3000:], vs.tail())
    kv = r.kv
    assert kv["addr"] == "10.0.2.15/24", kv
    assert kv["gateway"] == "10.0.2.2", kv
    assert kv["down_size"] == str(len(blob)), kv
    assert kv["down_md5"] == _md5(blob), (kv["down_md5"], _md5(blob))
    assert len(served) == 2 << 20, len(served)
    assert _md5(served) == kv["served_md5"], (_md5(served), kv["served_md5"])
    _check_clean(st, "nat")
    nat, p0 = st["nat"], st["p0"]
    assert nat["kind"] == "slirp" and nat["hostfwd"] == 1, nat
    assert nat["guest_errors"] == 0, nat
    # The download came out of the NAT port into p0, the upload went the
    # other way (frame bytes, so at least the payload).
    assert nat["tx_bytes"] >= len(blob) and p0["rx_bytes"] >= len(blob), st
    assert nat["rx_bytes"] >= 2 << 20 and p0["tx_bytes"] >= 2 << 20, st


# --------------------------------------------------------------------------
# 2. VXLAN between two vio serve switches

VX_GUEST = NET_SH + r"""
net_up @ME@/24
ping_ok @PEER@ 120 || fail "no ping reply from @PEER@"
kv pings "$(ping -c 3 -W 5 @PEER@ | grep -o '[0-9]* packets received' | cut -d' ' -f1)"
dd if=/dev/urandom of=/tmp/out bs=64k count=64 2>/dev/null
kv sent_md5 "$(md5sum </tmp/out | cut -d' ' -f1)"
# Receive the peer's 4 MiB while sending ours. busybox nc closes when its
# stdin ends: give the listener a FIFO this shell holds open.
mkfifo /tmp/hold
nc -l -p 5000 </tmp/hold >/tmp/got &
ncpid=$!
exec 3>/tmp/hold
i=0
until nc @PEER@ 5000 </tmp/out; do
    i=$((i + 1)); [ $i -gt 90 ] && fail "cannot connect to @PEER@:5000"; sleep 1
done
kv sent yes
wait $ncpid || fail "nc -l exited $?"
exec 3>&-
kv got_size "$(wc -c </tmp/got)"
kv got_md5 "$(md5sum </tmp/got | cut -d' ' -f1)"
pass
"""


def test_vxlan_between_two_switches_in_two_netns():
    """Two vio serve switches in two namespaces, joined by a VXLAN tunnel
    over a veth pair; a guest on each pings the other and both exchange
    4 MiB with nc."""
    _require(root=True, tools=[("ip", "iproute2"), ("busybox", "busybox-static")])
    _reap_stale_netns()
    w = new_workdir("net-uplink-vxlan")
    na, nb = Netns("vx-a"), Netns("vx-b")
    sa, sb = str(w / "pa.sock"), str(w / "pb.sock")
    vx = "type=vxlan,id=vx,vni=42,local=%s:4789,remote=%s:4789"
    try:
        na.create()
        nb.create()
        _veth(na, "10.77.0.1/24", nb, "10.77.0.2/24")
        args_a = ["--net", port_spec("pa", sa, MACS[0]),
                  "--uplink", vx % ("10.77.0.1", "10.77.0.2")]
        args_b = ["--net", port_spec("pb", sb, MACS[1]),
                  "--uplink", vx % ("10.77.0.2", "10.77.0.1")]
        with NetnsVioServe(na, args_a, workdir=w / "vio-a") as va, \
                NetnsVioServe(nb, args_b, workdir=w / "vio-b") as vb:
            ga_s = _sub(VX_GUEST, ME="10.0.0.1", PEER="10.0.0.2")
            gb_s = _sub(VX_GUEST, ME="10.0.0.2", PEER="10.0.0.1")
            with Guest(ga_s, args=net_args(sa, MACS[0]), name="net-uplink-vxlan-a",
                       smp=1) as ga, \
                    Guest(gb_s, args=net_args(sb, MACS[1]), name="net-uplink-vxlan-b",
                          smp=1) as gb:
                try:
                    r = wait_all({"a": ga, "b": gb}, timeout=300)
                except AssertionError as e:
                    raise AssertionError("%s\n--- vio a ---\n%s\n--- vio b ---\n%s"
                                         % (e, va.tail(), vb.tail())) from None
            sta, stb = ports(va), ports(vb)
        snmp_a, snmp_b = na.ip_snmp(), nb.ip_snmp()
    finally:
        na.delete()
        nb.delete()
    ra, rb = r["a"].kv, r["b"].kv
    for me, peer in ((ra, rb), (rb, ra)):
        assert me["pings"] == "3", (me, peer)
        assert me["got_size"] == str(4 << 20), me
        assert me["got_md5"] == peer["sent_md5"], (me, peer)
    _check_clean(sta, "switch a")
    _check_clean(stb, "switch b")
    for st in (sta, stb):
        t = st["vx"]
        assert t["kind"] == "vxlan" and t["vni"] == 42, t
        # 4 MiB each way went into and came out of each end of the tunnel.
        assert t["rx_bytes"] >= 4 << 20 and t["tx_bytes"] >= 4 << 20, t
    assert sta["vx"]["remote"] == "10.77.0.2:4789" and stb["vx"]["remote"] == "10.77.0.1:4789"
    # Full-size frames (1514 bytes + 50 of encapsulation > the veth's 1500)
    # crossed as fragmented UDP, reassembled on each side.
    for name, snmp in (("a", snmp_a), ("b", snmp_b)):
        assert snmp["ReasmOKs"] > 0 and snmp["ReasmFails"] == 0, (name, snmp)


# --------------------------------------------------------------------------
# 3. VXLAN against Linux's vxlan driver

LX_GUEST = NET_SH + WAIT_HOST_SH + r"""
net_up 10.0.0.1/24
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/served bs=64k count=32 2>/dev/null
kv served_md5 "$(md5sum </tmp/www/served | cut -d' ' -f1)"
httpd -p 8080 -h /tmp/www || fail "httpd did not start"
ping_ok 10.0.0.100 120 || fail "no ping reply from Linux's vx42 (10.0.0.100)"
kv pings "$(ping -c 3 -W 5 10.0.0.100 | grep -o '[0-9]* packets received' | cut -d' ' -f1)"
kv httpd_up yes
i=0
until wget -q -O /tmp/down http://10.0.0.100:8000/blob; do
    i=$((i + 1)); [ $i -ge 30 ] && fail "wget http://10.0.0.100:8000/blob failed"; sleep 1
done
kv down_size "$(wc -c </tmp/down)"
kv down_md5 "$(md5sum </tmp/down | cut -d' ' -f1)"
wait_host http://10.0.0.100:8000/done 240
pass
"""


def test_vxlan_switch_and_linux_vxlan_interface():
    """A vio serve switch's VXLAN uplink against a Linux vxlan interface in
    another namespace: ping both ways, 2 MiB over HTTP each way."""
    _require(root=True, tools=[("ip", "iproute2"), ("busybox", "busybox-static")])
    _reap_stale_netns()
    w = new_workdir("net-uplink-linux")
    www = w / "www"
    www.mkdir()
    blob = os.urandom(2 << 20)
    (www / "blob").write_bytes(blob)
    nv, nl = Netns("lx-vio"), Netns("lx-linux")
    sock = str(w / "p0.sock")
    web = None
    try:
        nv.create()
        nl.create()
        _veth(nv, "10.78.0.1/24", nl, "10.78.0.2/24")
        nl.ip("link", "add", "vx42", "type", "vxlan", "id", "42", "local", "10.78.0.2",
              "remote", "10.78.0.1", "dstport", "4789", "dev", "vb")
        nl.ip("addr", "add", "10.0.0.100/24", "dev", "vx42")
        nl.ip("link", "set", "vx42", "up")
        # Linux hands vx42's TCP to the underlay with the inner checksum
        # still to be filled in (CHECKSUM_PARTIAL), for the NIC to finish.
        # A veth finishes nothing: the skb reaches vio's UDP socket in the
        # other namespace as is, and the guest drops every segment (seen:
        # its InCsumErrors counts them; pings, checksummed in software,
        # pass). A real NIC computes the checksum; here the underlay device
        # without tx offload makes the kernel do it in software.
        nl.tx_csum_off("vb")
        weblog = open(w / "http-linux.log", "wb")
        web = subprocess.Popen(nl.cmd([sys.executable, "-m", "http.server", "--bind",
                                       "10.0.0.100", "8000", "--directory", www]),
                               stdin=subprocess.DEVNULL, stdout=weblog,
                               stderr=subprocess.STDOUT)
        weblog.close()
        args = ["--net", port_spec("p0", sock, MACS[0]),
                "--uplink", "type=vxlan,id=vx,vni=42,local=10.78.0.1:4789,"
                            "remote=10.78.0.2:4789"]
        with NetnsVioServe(nv, args, workdir=w / "vio") as vs:
            with Guest(LX_GUEST, args=net_args(sock, MACS[0]), name="net-uplink-linux-g",
                       smp=1) as g:
                g.wait_kv("httpd_up", 240)
                ping_out = nl.run([_busybox(), "ping", "-c", "3", "-W", "5", "10.0.0.1"],
                                  check=False, timeout=60)
                fetched = nl.run([sys.executable, "-c", FETCH_PY,
                                  "http://10.0.0.1:8080/served", 60 * timeout_scale()],
                                 check=False, timeout=120 * timeout_scale())
                (www / "done").write_bytes(b"ok\n")
                r = g.wait(120)
            st = ports(vs)
            lstats = nl.link_stats("vx42")
            assert r.passed, "guest failed: %s\n%s\n--- vio ---\n%s\n--- http.server ---\n%s" % (
                r.reason, r.log[-3000:], vs.tail(),
                (w / "http-linux.log").read_text(errors="replace")[-2000:])
    finally:
        if web is not None and web.poll() is None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait()
        nv.delete()
        nl.delete()
    kv = r.kv
    assert kv["pings"] == "3", kv
    assert "3 packets received" in ping_out, ping_out
    assert kv["down_size"] == str(len(blob)), kv
    assert kv["down_md5"] == _md5(blob), (kv["down_md5"], _md5(blob))
    assert fetched.split() == [str(2 << 20), kv["served_md5"]], (fetched, kv)
    _check_clean(st, "vio switch")
    t = st["vx"]
    assert t["rx_bytes"] >= 2 << 20 and t["tx_bytes"] >= 2 << 20, t
    # Linux's side of the tunnel saw the same traffic.
    assert lstats["rx"]["bytes"] >= 2 << 20 and lstats["tx"]["bytes"] >= 2 << 20, lstats
    assert lstats["rx"]["errors"] == 0 and lstats["rx"]["dropped"] == 0, lstats
