"""End-to-end: QEMU TCG guests with virtio-net-pci on vhost-user ports of
vio serve's switch, driven by the guests' stock virtio_net driver.

Each test starts its own vio serve (the ASan build) with --net ports, boots
guests that configure eth0 statically and talk to each other with busybox
ping and nc, and checks both sides: the guests' verdicts and values, and
the switch's per-port counters from the control socket.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from guest import Guest, new_workdir  # noqa: E402
from vioproc import VioServe  # noqa: E402

MACS = ["52:54:00:00:00:%02x" % i for i in range(1, 8)]

# Shell helpers prepended to every guest script.
NET_SH = r"""
net_up() {   # net_up IP/PREFIX
    wait_for_dev /sys/class/net/eth0 20
    must ip link set eth0 up
    must ip addr add "$1" dev eth0
}
ping_ok() {  # ping_ok IP SECONDS: succeeds once one echo comes back
    _end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$_end" ]; do
        ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
    done
    return 1
}
"""


def net_args(sock, mac, queues=1, nid="n0"):
    # vectors=0: QEMU 7.2 under TCG (no KVM irqfd) crashes at the driver's
    # DRIVER_OK when a vhost-user-net device uses MSI-X (virtio-pci takes
    # its irqfd path for vhost-user net, whose vector table only KVM sets
    # up). INTx works; with KVM, MSI-X does.
    dev = "virtio-net-pci,netdev=%s,mac=%s,vectors=0" % (nid, mac)
    if queues > 1:
        dev += ",mq=on"
    return ["-chardev", "socket,id=c%s,path=%s" % (nid, sock),
            "-netdev", "vhost-user,id=%s,chardev=c%s,queues=%d" % (nid, nid, queues),
            "-device", dev]


def port_spec(pid, sock, mac, vlan=None, queues=1):
    s = "id=%s,socket=%s,mac=%s,queues=%d" % (pid, sock, mac, queues)
    if vlan is not None:
        s += ",vlan=%d" % vlan
    return s


def ports(vs):
    return {p["id"]: p for p in vs.ctl("net.ports")}


def wait_all(guests, timeout=300):
    results = {}
    deadline = time.monotonic() + timeout
    for name, g in guests.items():
        results[name] = g.wait(timeout=max(10, deadline - time.monotonic()))
    for name, r in results.items():
        assert r.passed, "guest %s failed: %s\n%s" % (name, r.reason, r.log[-3000:])
    return results


def test_two_guests_ping_and_64m_transfer_two_queue_pairs():
    """Ping both ways and a 64 MiB nc transfer whose SHA-256 matches on both
    ends, with two queue pairs enabled in both guests."""
    w = new_workdir("net-two")
    socks = [str(w / "p1.sock"), str(w / "p2.sock")]
    sender = NET_SH + r"""
net_up 10.0.0.1/24
kv queues "$(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
ping_ok 10.0.0.2 90 || fail "no ping reply from 10.0.0.2"
kv pinged yes
dd if=/dev/urandom of=/tmp/big bs=1M count=64 2>/dev/null
kv sha "$(sha256sum /tmp/big | cut -d' ' -f1)"
# The receiver listens once it has pinged us; retry until it does.
i=0
until nc 10.0.0.2 5000 </tmp/big; do
    i=$((i + 1)); [ $i -gt 60 ] && fail "cannot connect to 10.0.0.2:5000"; sleep 1
done
kv sent yes
pass
"""
    receiver = NET_SH + r"""
net_up 10.0.0.2/24
kv queues "$(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
ping_ok 10.0.0.1 90 || fail "no ping reply from 10.0.0.1"
kv pinged yes
# busybox nc closes the connection when its stdin ends: give it a stdin
# that never does (a FIFO this shell holds open), so only the sender's end
# of the data closes it.
mkfifo /tmp/hold
nc -l -p 5000 </tmp/hold >/tmp/got &
ncpid=$!
exec 3>/tmp/hold
wait $ncpid || fail "nc -l exited $?"
exec 3>&-
kv size "$(wc -c </tmp/got)"
kv sha "$(sha256sum /tmp/got | cut -d' ' -f1)"
pass
"""
    args = ["--net", port_spec("p1", socks[0], MACS[0], queues=2),
            "--net", port_spec("p2", socks[1], MACS[1], queues=2)]
    with VioServe(args, workdir=w / "vio") as vs:
        with Guest(sender, args=net_args(socks[0], MACS[0], queues=2), name="net-two-a",
                   smp=2) as a, \
             Guest(receiver, args=net_args(socks[1], MACS[1], queues=2), name="net-two-b",
                   smp=2) as b:
            # While both run: QEMU has enabled both queue pairs on both ports.
            a.wait_kv("pinged", 200)
            b.wait_kv("pinged", 200)
            for p in ("p1", "p2"):
                pairs = vs.stats(p)["pairs"]
                assert len(pairs) == 2 and all(q["rx_enabled"] and q["tx_enabled"]
                                               for q in pairs), (p, pairs)
            r = wait_all({"a": a, "b": b})
        st = ports(vs)
    ra, rb = r["a"], r["b"]
    for g in (ra, rb):
        assert g.kv["queues"].split() == ["rx-0", "rx-1", "tx-0", "tx-1"], g.kv
    assert rb.kv["size"] == str(64 << 20), rb.kv
    assert ra.kv["sha"] == rb.kv["sha"], (ra.kv["sha"], rb.kv["sha"])
    for p in ("p1", "p2"):
        c = st[p]
        assert c["tx_drop_spoof"] == 0 and c["tx_drop_bad"] == 0, c
    # 64 MiB crossed p1 -> p2 (TSO super-frames count once each).
    assert st["p1"]["tx_bytes"] >= 64 << 20 and st["p2"]["rx_bytes"] >= 64 << 20, st


def test_vlan_isolation_and_spoofing():
    """A guest in another VLAN reaches nobody; a guest that spoofs a MAC gets
    nothing through and the switch counts the drops; with its own MAC back
    it talks again."""
    w = new_workdir("net-vlan")
    socks = [str(w / ("p%d.sock" % i)) for i in (1, 2, 3)]
    a = NET_SH + r"""
net_up 10.0.0.1/24
ping_ok 10.0.0.2 120 || fail "A cannot reach B"
kv a_to_b ok
# Stay up while the others run their checks.
i=0; while [ ! -e /tmp/never ] && [ $i -lt 90 ]; do sleep 1; i=$((i + 1)); done
pass
"""
    b = NET_SH + r"""
net_up 10.0.0.2/24
ping_ok 10.0.0.1 120 || fail "B cannot reach A"
kv b_to_a ok
# Spoof: send as someone else.
ip link set eth0 down
ip link set eth0 address 52:54:00:66:66:66
ip link set eth0 up
ip neigh flush dev eth0 2>/dev/null
if ping_ok 10.0.0.1 8; then kv spoofed_ping through; else kv spoofed_ping blocked; fi
ip link set eth0 down
ip link set eth0 address %s
ip link set eth0 up
ping_ok 10.0.0.1 60 && kv restored_ping ok
pass
""" % MACS[1]
    c = NET_SH + r"""
net_up 10.0.0.3/24
if ping_ok 10.0.0.1 10; then kv c_to_a through; else kv c_to_a blocked; fi
if ping_ok 10.0.0.2 5; then kv c_to_b through; else kv c_to_b blocked; fi
pass
"""
    args = ["--net", port_spec("p1", socks[0], MACS[0], vlan=10),
            "--net", port_spec("p2", socks[1], MACS[1], vlan=10),
            "--net", port_spec("p3", socks[2], MACS[2], vlan=20)]
    with VioServe(args, workdir=w / "vio") as vs:
        with Guest(a, args=net_args(socks[0], MACS[0]), name="net-vlan-a", smp=1) as ga, \
             Guest(b, args=net_args(socks[1], MACS[1]), name="net-vlan-b", smp=1) as gb, \
             Guest(c, args=net_args(socks[2], MACS[2]), name="net-vlan-c", smp=1) as gc:
            rb = gb.wait(300)
            rc = gc.wait(300)
            st = ports(vs)
            ga.kill()
        assert rb.passed, rb.reason + "\n" + rb.log[-3000:]
        assert rc.passed, rc.reason + "\n" + rc.log[-3000:]
    assert rb.kv["b_to_a"] == "ok", rb.kv
    assert rb.kv["spoofed_ping"] == "blocked", rb.kv
    assert rb.kv.get("restored_ping") == "ok", rb.kv
    assert rc.kv["c_to_a"] == "blocked" and rc.kv["c_to_b"] == "blocked", rc.kv
    assert st["p2"]["tx_drop_spoof"] > 0, st["p2"]
    assert st["p1"]["tx_drop_spoof"] == 0 and st["p3"]["tx_drop_spoof"] == 0, st
    # C's ARP requests went out (counted on its port) and reached no one.
    assert st["p3"]["tx_packets"] > 0, st["p3"]
    assert st["p3"]["rx_packets"] == 0, st["p3"]


def test_port_added_at_runtime_and_link_down():
    """vio ctl adds a port to a running switch, a guest uses it; with the
    port's link set down its frames are dropped and counted, and up again
    they flow."""
    w = new_workdir("net-ctl")
    s1, s2 = str(w / "p1.sock"), str(w / "p2.sock")
    a = NET_SH + r"""
net_up 10.0.0.1/24
ping_ok 10.0.0.2 120 || fail "no reply before link down"
kv first ok
state=up
i=0
while [ $i -lt 150 ]; do
    if ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1; then
        [ $state = down ] && { kv after_up ok; pass; }
    elif [ $state = up ]; then
        state=down
        kv saw_down yes
    fi
    i=$((i + 1))
done
fail "link state never went down and up again (state $state)"
"""
    b = NET_SH + r"""
net_up 10.0.0.2/24
ping_ok 10.0.0.1 120 || fail "B cannot reach A"
sleep 100
pass
"""
    with VioServe(["--net", port_spec("p1", s1, MACS[0])], workdir=w / "vio") as vs:
        added = vs.ctl("net.port.add", {"spec": port_spec("p2", s2, MACS[1])})
        assert added["id"] == "p2", added
        vs.wait_socket(s2)
        with Guest(a, args=net_args(s1, MACS[0]), name="net-ctl-a", smp=1) as ga, \
             Guest(b, args=net_args(s2, MACS[1]), name="net-ctl-b", smp=1) as gb:
            ga.wait_kv("first", 200)
            vs.ctl("net.port.link", {"id": "p2", "up": False})
            ga.wait_kv("saw_down", 60)
            down = ports(vs)["p2"]
            vs.ctl("net.port.link", {"id": "p2", "up": True})
            ra = ga.wait(200)
            gb.kill()
        assert ra.passed, ra.reason + "\n" + ra.log[-3000:]
        assert down["link"] == "down", down
        assert down["rx_drop_link_down"] > 0, down
        assert ra.kv.get("after_up") == "ok", ra.kv
        removed = vs.ctl("net.port.remove", {"id": "p2"})
        assert removed == {"removed": "p2"}, removed
        assert "p2" not in ports(vs)
        assert not Path(s2).exists()
