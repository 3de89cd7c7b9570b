"""End-to-end: vio run's TAP uplink joins a guest's NIC to the host stack.

Inside the nested rig (tests/lib/rig.py), L1 plays the host. It loads tun.ko
and runs two vio run processes, each with one NIC and one TAP uplink that
vio creates itself through /dev/net/tun:

    guest "v": in-process virtio-net  --switch--  tap viotap0  10.11.0.1 (L1)
    guest "e": emulated e1000         --switch--  tap viotap1  10.12.0.1 (L1)

L1 gives each tap its address once vio has created it, serves a 1 MiB random
file with busybox httpd and listens for an upload with nc. Each L2 guest
pings L1 (5 of 5 answered), downloads the file (md5 equal to L1's), and
sends 1 MiB of its own back to L1 (md5 checked by L1); L1 pings each guest
too. Whether a kernel's TCP sends super-frames depends on its congestion
window, so each side also sends one 40000-byte TCP super-frame of its own
(vgtool tso-send, a packet socket with a virtio_net_hdr) that the other side
catches with a packet socket and checks byte for byte (vgtool tso-recv). While the VMs still run, L1 reads `vio ctl net.ports` and `vio ctl
stats` of both and the kernel's counters of both taps.

What passing proves: vio run creates a TAP interface from `--uplink
type=tap` and carries ARP, ICMP and TCP both ways between the L1 kernel's
stack and a guest, for both NIC models: the virtio-net guest with offload
metadata end to end (virtio_net_hdr on the tap, TSO super-frames either way,
whole: the tap's tx_gso/rx_gso count them and the receiver sees one frame),
and the e1000 guest whose model segments its TSO frames before the tap and
receives L1's TSO super-frames finished in software by the switch (L1
catches the e1000 guest's super-frame as 28 segments with correct IPv4 and
TCP checksums). Each tap
port's counters show >= 1 MiB in each direction and the kernel's tap
counters agree with them; no bad descriptor, bad offload header, spoofed
frame or tap read/write error was counted, no delivery failed once the
guest's driver was up (the few frames L1 sends before that, IPv6 neighbour
discovery, are lost and counted), and both vio run processes exit 0 after
their guests power off.

What it does not prove: a TAP uplink with offload=off, a persistent
(pre-created) tap, a tap on a bridge with other hosts, IPv6, or throughput;
nor that write_busy stays 0 (frames the kernel refused for a full queue are
legitimate drops and only reported).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from rig import Rig  # noqa: E402

RUN = 'vio run --kernel "$RIG_L2_KERNEL" --cmdline "$RIG_L2_APPEND" --mem 256M'
MAC_V = "52:54:00:00:7a:01"
MAC_E = "52:54:00:00:7a:02"
SIZE = 1 << 20
# vgtool tso-send/tso-recv: one 40000-byte TCP super-frame each way per guest
# (28 segments of 1448), to a port nothing listens on.
TSO_PORT = 7000
TSO_LEN = 40000
TSO_SEGS = (TSO_LEN + 1447) // 1448
SEEDS = {"up_v": 71, "up_e": 72, "down_v": 81, "down_e": 82}

# name: (model, tap, L1 address, guest address, upload port, MAC)
GUESTS = {
    "v": ("virtio", "viotap0", "10.11.0.1", "10.11.0.2", 5000, MAC_V),
    "e": ("e1000", "viotap1", "10.12.0.1", "10.12.0.2", 5001, MAC_E),
}

SCRIPT = r"""
modprobe tun 2>/tmp/tun.err
[ -c /dev/net/tun ] || fail "L1 has no /dev/net/tun after modprobe tun: $(cat /tmp/tun.err)"
ip link set lo up
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/data bs=64k count=16 2>/dev/null
kv served_bytes "$(wc -c < /tmp/www/data)"
kv served_md5 "$(md5sum < /tmp/www/data | cut -d' ' -f1)"
httpd -p 8080 -h /tmp/www || fail "busybox httpd did not start in L1"
# The uploads: busybox nc -l quits when the sender closes; a FIFO opened
# read-write gives it a stdin that never ends (else it would close first).
mkfifo /tmp/never
timeout 900 nc -l -p 5000 > /tmp/up.v 0<>/tmp/never &
NC_V=$!
timeout 900 nc -l -p 5001 > /tmp/up.e 0<>/tmp/never &
NC_E=$!

run_l2 v %(run)s --initrd /rig/l2/v.initrd --ctl /tmp/v.sock \
    --net mac=%(mac_v)s,model=virtio,id=nic0 --uplink type=tap,id=t0,ifname=viotap0
run_l2 e %(run)s --initrd /rig/l2/e.initrd --ctl /tmp/e.sock \
    --net mac=%(mac_e)s,model=e1000,id=nic0 --uplink type=tap,id=t0,ifname=viotap1

# vio creates the tap before the guest boots; it is L1's to configure.
tap_up() {  # NAME TAP ADDR
    local i=0
    while [ ! -e /sys/class/net/$2 ]; do
        l2_running $1 || fail "vio run $1 exited before $2 appeared: $(tail -n 5 /tmp/$1.log)"
        [ $i -lt 600 ] || fail "tap $2 did not appear within 60 s"
        usleep 100000; i=$((i+1))
    done
    kv $1.tap_wait_ticks $i
    must ip addr add $3/24 dev $2
    must ip link set $2 up
}
tap_up v viotap0 10.11.0.1
tap_up e viotap1 10.12.0.1

# The guests' TCP super-frames (vgtool tso-send after their upload), caught
# on the taps and checked byte for byte.
for n in v e; do
    if [ $n = v ]; then tap=viotap0; seed=%(seed_up_v)d; else tap=viotap1; seed=%(seed_up_e)d; fi
    vgtool tso-recv $tap %(tso_port)d %(tso_len)d $seed 600 > /tmp/tso_up.$n 2>&1 &
    echo $! > /tmp/tso_up.$n.pid
done
for n in v e; do
    i=0; while ! grep -q ready /tmp/tso_up.$n; do
        [ $i -lt 100 ] || fail "vgtool tso-recv for $n: $(cat /tmp/tso_up.$n)"
        usleep 100000; i=$((i+1)); done
done

# vio's port counters as one line of JSON.
ports() {  # NAME KEY
    vio ctl -s /tmp/$1.sock ports > /tmp/$1-$2.json 2>&1
    kv $1.ctl_$2_rc $?
    kv $1.$2 "$(tr -d '\n' < /tmp/$1-$2.json | tr -s ' ')"
}
# Both guests report carrier=1 once their driver is up (so frames L1 sent
# before that, e.g. IPv6 neighbour discovery, may have been dropped: the
# first snapshot), xfer_done=1 after their transfers, and then wait for
# L1 to connect to their port 6000, so the VMs still run (quietly) while
# L1 reads the counters again.
i=0
while ! grep -q 'xfer_done=1' /tmp/v.log || ! grep -q 'xfer_done=1' /tmp/e.log; do
    for n in v e; do
        if [ ! -e /tmp/$n.snap ] && grep -q 'VIO-KV carrier=' /tmp/$n.log; then
            ports $n ports0
            : > /tmp/$n.snap
        fi
    done
    if ! l2_running v || ! l2_running e; then break; fi
    grep -q 'VIO-TEST FAIL' /tmp/v.log /tmp/e.log && break
    [ $i -lt 6000 ] || break
    usleep 100000; i=$((i+1))
done
kv xfer_wait_s $((i / 10))

# A TCP super-frame from L1 to each guest, whatever L1's TCP chose to send
# during the transfers: through the tap whole, then to the virtio guest whole
# (GUEST_TSO4) or cut by the switch for the e1000.
must vgtool tso-send viotap0 %(mac_v)s 10.11.0.2 %(tso_port)d %(tso_len)d %(seed_down_v)d
must vgtool tso-send viotap1 %(mac_e)s 10.12.0.2 %(tso_port)d %(tso_len)d %(seed_down_e)d
i=0
while ! grep -q 'tso_done=1' /tmp/v.log || ! grep -q 'tso_done=1' /tmp/e.log; do
    if ! l2_running v || ! l2_running e; then break; fi
    [ $i -lt 1200 ] || break
    usleep 100000; i=$((i+1))
done
for n in v e; do
    wait $(cat /tmp/tso_up.$n.pid)
    kv tso_up_$n.rc $?
    kv tso_up_$n "$(tail -n 1 /tmp/tso_up.$n)"
done

# The uploads are complete once each L1 nc has quit.
for n in v e; do
    if [ $n = v ]; then pid=$NC_V; else pid=$NC_E; fi
    if grep -q 'xfer_done=1' /tmp/$n.log; then
        wait $pid
        kv up_$n.nc_rc $?
    fi
    kv up_$n.bytes "$(wc -c < /tmp/up.$n)"
    kv up_$n.md5 "$(md5sum < /tmp/up.$n | cut -d' ' -f1)"
done
kv l1_ping_v "$(ping -c 3 -W 2 10.11.0.2 | grep -o '[0-9]* packets received' | cut -d' ' -f1)"
kv l1_ping_e "$(ping -c 3 -W 2 10.12.0.2 | grep -o '[0-9]* packets received' | cut -d' ' -f1)"

# Counters while the VMs run: vio's (JSON, one line each) and the kernel's.
for n in v e; do
    ports $n ports
    vio ctl -s /tmp/$n.sock stats > /tmp/$n-stats.json 2>&1
    kv $n.ctl_stats_rc $?
    kv $n.stats "$(tr -d '\n' < /tmp/$n-stats.json | tr -s ' ')"
done
for t in viotap0 viotap1; do
    for k in rx_bytes tx_bytes rx_packets tx_packets rx_dropped tx_dropped rx_errors tx_errors; do
        kv $t.$k "$(cat /sys/class/net/$t/statistics/$k)"
    done
done

for a in 10.11.0.2 10.12.0.2; do
    i=0; while ! echo done | timeout 20 nc $a 6000 > /dev/null; do
        i=$((i+1)); [ $i -lt 10 ] || break; sleep 1; done
done
wait_l2_verdict v 300
wait_l2_verdict e 300
wait_l2_exit v 60
kv v_exit $?
wait_l2_exit e 60
kv e_exit $?
# Warnings the tap uplinks or the e1000 model logged (vio's stderr).
kv v_logged_tap "$(grep -c 'tap t0' /tmp/v.log)"
kv e_logged_tap "$(grep -c 'tap t0' /tmp/e.log)"
kv e_logged_e1000 "$(grep -c 'e1000 nic0' /tmp/e.log)"
pass
""" % {"run": RUN, "mac_v": MAC_V, "mac_e": MAC_E, "tso_port": TSO_PORT, "tso_len": TSO_LEN,
       "seed_up_v": SEEDS["up_v"], "seed_up_e": SEEDS["up_e"],
       "seed_down_v": SEEDS["down_v"], "seed_down_e": SEEDS["down_e"]}

# One L2 guest: reach L1 over its NIC and the tap, download, upload, then
# wait for L1 to read the counters.
L2 = r"""
L1=%(l1)s
kv driver "$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
kv mac "$(cat /sys/class/net/eth0/address)"
ip link set eth0 up
ip addr add %(me)s/24 dev eth0
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do
    usleep 100000; i=$((i+1)); done
kv carrier "$(cat /sys/class/net/eth0/carrier)"
i=0; while ! ping -c 1 -W 1 $L1 >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 240 ] || fail "$L1 (L1 over the tap) never answered a ping"; done
kv ping_tries "$i"
kv ping_ok "$(ping -c 5 -i 0.2 $L1 | grep -o '[0-9]* packets received' | cut -d' ' -f1)"
i=0; while ! wget -q -O /tmp/down http://$L1:8080/data; do
    i=$((i+1)); [ $i -lt 60 ] || fail "download from L1 failed"; sleep 1; done
kv down_bytes "$(wc -c < /tmp/down)"
kv down_md5 "$(md5sum < /tmp/down | cut -d' ' -f1)"
dd if=/dev/urandom of=/tmp/up bs=64k count=16 2>/dev/null
kv sent_md5 "$(md5sum < /tmp/up | cut -d' ' -f1)"
i=0; while ! nc $L1 %(port)d < /tmp/up; do
    i=$((i+1)); [ $i -lt 30 ] || fail "upload to L1 failed"; sleep 1; done
kv rx_packets "$(cat /sys/class/net/eth0/statistics/rx_packets)"
kv tx_packets "$(cat /sys/class/net/eth0/statistics/tx_packets)"
# One TCP super-frame each way, whatever our TCP chose: catch L1's (sent
# once L1 sees xfer_done), send ours to L1's tap.
vgtool tso-recv eth0 %(tso_port)d %(tso_len)d %(seed_down)d 300 > /tmp/tso_down 2>&1 &
TR=$!
i=0; while ! grep -q ready /tmp/tso_down; do
    [ $i -lt 100 ] || fail "vgtool tso-recv: $(cat /tmp/tso_down)"; usleep 100000; i=$((i+1)); done
L1MAC=$(awk -v a=$L1 '$1 == a {print $4}' /proc/net/arp)
kv l1_mac "$L1MAC"
must vgtool tso-send eth0 "$L1MAC" $L1 %(tso_port)d %(tso_len)d %(seed_up)d
kv xfer_done 1
wait $TR
kv tso_down_rc $?
kv tso_down "$(tail -n 1 /tmp/tso_down)"
kv tso_done 1
# L1 reads the counters while this VM runs, then connects here. Waiting
# without sending anything keeps the counters still while L1 reads them.
timeout 300 nc -l -p 6000 < /dev/null > /dev/null || fail "L1 never said done"
pass
"""


def _ports(kv, name, key):
    """{port id: counters} from L1's `vio ctl ports` of guest @name."""
    assert kv.get("%s.ctl_%s_rc" % (name, key)) == "0", (name, key, kv)
    raw = kv.get("%s.%s" % (name, key), "")
    try:
        return {p["id"]: p for p in json.loads(raw)}
    except (ValueError, TypeError, KeyError):
        raise AssertionError("vio ctl ports of %s (%s) is not a list of ports: %r"
                             % (name, key, raw[:2000]))


def _all(obj, key):
    """Every value of @key anywhere in a JSON tree."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.append(v)
            out.extend(_all(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_all(v, key))
    return out


def test_e1000_and_virtio_guests_reach_l1_over_tap():
    l2 = {n: L2 % {"l1": g[2], "me": g[3], "port": g[4], "tso_port": TSO_PORT,
                   "tso_len": TSO_LEN, "seed_down": SEEDS["down_" + n],
                   "seed_up": SEEDS["up_" + n]} for n, g in GUESTS.items()}
    with Rig(SCRIPT, l2_tests=l2, vio=True, name="rig-tap") as rig:
        r = rig.wait(900)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, "\n".join(
        ln for ln in v.splitlines() if "unclaimed" not in ln)[-4000:])
        for k, v in r.l2_logs.items())
    assert r.passed, "rig failed: %s\n%s\n%s" % (r.reason, r.log[-3000:], logs)
    kv = r.kv
    assert kv["served_bytes"] == str(SIZE), kv
    for n, (model, tap, l1, me, port, mac) in GUESTS.items():
        ctx = "guest %s (%s): %s" % (n, model, kv)
        assert kv[n + ".driver"] == ("virtio_net" if model == "virtio" else "e1000"), ctx
        assert kv[n + ".mac"] == mac, ctx
        assert kv[n + ".carrier"] == "1", ctx
        # L2 -> L1 and L1 -> L2 ICMP.
        assert kv[n + ".ping_ok"] == "5", ctx
        assert kv["l1_ping_" + n] == "3", ctx
        # Download (L1 -> tap -> switch -> NIC) and upload (the other way).
        assert kv[n + ".down_bytes"] == str(SIZE), ctx
        assert kv[n + ".down_md5"] == kv["served_md5"], ctx
        assert kv["up_%s.nc_rc" % n] == "0", ctx
        assert kv["up_%s.bytes" % n] == str(SIZE), ctx
        assert kv["up_%s.md5" % n] == kv[n + ".sent_md5"], ctx

        # The super-frames vgtool sent each way arrived (checked below).
        assert kv["tso_up_%s.rc" % n] == "0" and kv[n + ".tso_down_rc"] == "0", ctx

        # vio's counters, read while the VM ran: once when its driver was
        # up (carrier=1), once after the transfers.
        ports0, ports = _ports(kv, n, "ports0"), _ports(kv, n, "ports")
        assert sorted(ports) == ["nic0", "t0"], (n, ports)
        t, nic = ports["t0"], ports["nic0"]
        assert t["kind"] == "tap" and nic["kind"] == model, (n, ports)
        tctx = "guest %s: tap port %s\nall ports: %s" % (n, t, ports)
        assert t["id"] == "t0" and t["ifname"] == tap and t["offload"] is True, tctx
        assert t["link"] == "up", tctx
        # tx: frames the tap read from L1 into the switch; rx: delivered to L1.
        assert t["tx_bytes"] >= SIZE and t["rx_bytes"] >= SIZE, tctx
        assert t["tx_packets"] > 0 and t["rx_packets"] > 0, tctx
        for k in ("read_error", "read_bad", "write_error"):
            assert t[k] == 0, (k, tctx)
        assert nic["mac"] == mac and nic["rx_bytes"] >= SIZE and nic["tx_bytes"] >= SIZE, \
            (n, nic)
        for p in ports.values():
            for k in ("tx_drop_spoof", "tx_drop_bad", "tx_drop_link_down",
                      "rx_drop_link_down"):
                assert p[k] == 0, (n, p["id"], k, ports)
            # Frames L1 sent before the guest's driver was up (IPv6 neighbour
            # discovery and MLD once the tap is up) are lost for want of
            # buffers: virtio-net has none posted yet, the e1000's receiver
            # is off (RCTL.EN clear); both count rx_drop_full, as does a
            # full receive ring during the transfer (TCP recovers). Nothing
            # fails delivery for another reason.
            assert p["rx_drop_error"] == 0, (n, p["id"], ports)
            assert ports0[p["id"]]["rx_drop_full"] < 64, (n, p["id"], ports0)
        # The kernel's view of the tap agrees: L1 received the upload
        # (rx) and sent the download (tx), with no errors.
        assert int(kv[tap + ".rx_bytes"]) >= SIZE, (tap, kv)
        assert int(kv[tap + ".tx_bytes"]) >= SIZE, (tap, kv)
        assert kv[tap + ".rx_errors"] == "0" and kv[tap + ".tx_errors"] == "0", (tap, kv)
        # Read just after vio's, with the guests quiet: equal but for a stray
        # frame or two (ARP, IPv6) in between.
        assert abs(int(kv[tap + ".rx_bytes"]) - t["rx_bytes"]) <= 3000, (tap, kv, t)
        assert abs(int(kv[tap + ".tx_bytes"]) - t["tx_bytes"]) <= 3000, (tap, kv, t)

        # Bad-descriptor counters of the NIC models.
        assert kv[n + ".ctl_stats_rc"] == "0", ctx
        if model == "e1000":
            for k in ("tx_bad_ring", "tx_bad_desc", "tx_bad_ctx", "tx_too_big",
                      "rx_bad_ring", "rx_bad_desc", "rx_too_big"):
                assert nic[k] == 0, (k, nic)
            assert nic["tx_frames"] > 500 and nic["rx_frames"] > 500, nic
            # The guest used TSO (its super-frame at least), segmented by
            # the model: the tap only got complete frames, one per frame the
            # model sent, and L1 caught the super-frame as 28 checksummed
            # segments.
            assert nic["tx_tso"] > 0, nic
            assert t["rx_gso"] == 0, (nic, t)
            assert kv["tso_up_e"] == "frames=%d gso=0 bytes=%d" % (TSO_SEGS, TSO_LEN), kv
            # L1's super-frame reached the tap whole; the switch cut it for
            # the e1000 and every byte arrived (the guest's GRO may merge
            # the segments again before its packet socket sees them).
            assert t["tx_gso"] >= 1, (nic, t)
            assert kv["e.tso_down"].endswith(" bytes=%d" % TSO_LEN), kv
            # (Within a few frames: the two ports are read one after the other.)
            assert abs(t["rx_packets"] - nic["tx_frames"]) <= 4, (nic, t)
            # L1's TCP sent TSO super-frames into the tap; the switch cut
            # them for the e1000, which then took more frames than the tap read.
            assert nic["rx_frames"] > t["tx_packets"], (nic, t)
        else:
            stats = json.loads(kv[n + ".stats"])
            # Super-frames crossed the tap whole both ways (virtio_net_hdr):
            # at least the two vgtool sent, caught whole on the other side.
            assert t["tx_gso"] >= 1 and t["rx_gso"] >= 1, ("no TSO frame crossed", t)
            assert kv["tso_up_v"] == "frames=1 gso=1 bytes=%d" % TSO_LEN, kv
            assert kv["v.tso_down"] == "frames=1 gso=1 bytes=%d" % TSO_LEN, kv
            for k in ("tx_bad_desc", "rx_bad_desc", "rx_too_big"):
                vals = _all(stats, k)
                assert vals and all(v == 0 for v in vals), (k, stats)
        assert kv[n + "_exit"] == "0", "%s\n%s" % (ctx, logs)
        assert kv[n + "_logged_tap"] == "0", logs
    assert kv["e_logged_e1000"] == "0", logs
