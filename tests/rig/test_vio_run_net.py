"""End-to-end: vio run's NICs carry real traffic between Linux guests.

Inside the nested rig (tests/lib/rig.py), L1 runs two vio run processes:
guest "e" has one emulated e1000 NIC (Intel 82540EM, Linux's stock e1000
driver), guest "v" one in-process virtio-net NIC. Each vio run has its own
switch; the two switches are joined into one L2 segment by a VXLAN uplink
each, over L1's loopback. So a frame from one guest to the other goes
guest -> NIC model -> switch -> VXLAN uplink -> UDP on lo -> VXLAN uplink ->
switch -> NIC model -> guest.

What passing proves: the e1000 driver probes our model (EEPROM checksum and
MAC, PHY, link up), and the two guests exchange ARP, ICMP and TCP both
ways: a 2 MiB download into the e1000 guest (its receive ring) and a 2 MiB
upload from it (its transmit ring, with Linux's TSO and checksum offload,
segmented by the model) arrive intact (md5 on both ends), with no descriptor
the model had to refuse; a 40000-byte TCP super-frame the e1000 guest sends
(vgtool tso-send, so TSO is used whatever its TCP chose) reaches the virtio
guest with every byte and checksum right (vgtool tso-recv). It does not prove e1000 and virtio-net ports work
on one switch without the uplinks in between; the unit tests (test_e1000,
test_switch) cover the single-switch data path.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from rig import Rig  # noqa: E402

RUN = 'vio run --kernel "$RIG_L2_KERNEL" --cmdline "$RIG_L2_APPEND" --mem 256M'
MAC_E = "52:54:00:00:e1:01"
MAC_V = "52:54:00:00:71:02"

SCRIPT = """
vx() { echo "type=vxlan,id=vx,vni=42,local=127.0.0.1:$1,remote=127.0.0.1:$2"; }
run_l2 e %(run)s --cpus 2 --initrd /rig/l2/e.initrd --ctl /tmp/e.sock \\
    --net mac=%(mac_e)s,model=e1000,id=nic0 --uplink "$(vx 4789 4790)"
run_l2 v %(run)s --initrd /rig/l2/v.initrd --ctl /tmp/v.sock \\
    --net mac=%(mac_v)s,model=virtio,id=nic0 --uplink "$(vx 4790 4789)"
# Counters while both still run: the e1000 guest waits after its transfers.
i=0; while ! grep -q 'xfer_done=1' /tmp/e.log 2>/dev/null && [ $i -lt 3000 ]; do
    if ! l2_running e || ! l2_running v; then break; fi
    usleep 100000; i=$((i+1)); done
vio ctl -s /tmp/e.sock net.ports > /tmp/e-ports.json 2>&1
vio ctl -s /tmp/v.sock net.ports > /tmp/v-ports.json 2>&1
num() { grep -o "\\"$2\\": [0-9]*" "$1" | head -1 | awk '{print $2}'; }
for k in tx_frames tx_tso rx_frames tx_bad_ring tx_bad_desc tx_bad_ctx tx_too_big \\
         rx_bad_ring rx_bad_desc rx_no_buf; do
    kv "e1000_$k" "$(num /tmp/e-ports.json $k)"
done
kv vx_e_tx "$(grep -A14 '"kind": "vxlan"' /tmp/e-ports.json | grep -o '"tx_packets": [0-9]*' | awk '{print $2}')"
kv vx_v_tx "$(grep -A14 '"kind": "vxlan"' /tmp/v-ports.json | grep -o '"tx_packets": [0-9]*' | awk '{print $2}')"
wait_l2_verdict v 300
wait_l2_verdict e 120
wait_l2_exit e 30
kv e_exit $?
wait_l2_exit v 30
kv v_exit $?
kv e_logged_bad "$(grep -c 'e1000 nic0' /tmp/e.log)"
pass
""" % {"run": RUN, "mac_e": MAC_E, "mac_v": MAC_V}

# The virtio-net guest: serves 2 MiB over HTTP, takes a 2 MiB upload.
L2_V = """
ip link set eth0 up
ip addr add 10.9.0.2/24 dev eth0
kv driver "$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
kv mac "$(cat /sys/class/net/eth0/address)"
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/data bs=64k count=32 2>/dev/null
kv served_md5 "$(md5sum < /tmp/www/data | cut -d' ' -f1)"
httpd -p 8080 -h /tmp/www
# The upload comes after the e1000 guest's download. busybox nc sends its
# FIN when its stdin ends, and the other end then quits: give it a stdin
# that never ends (a FIFO opened read-write).
mkfifo /tmp/never
# After its upload the e1000 guest sends one TCP super-frame (whatever its
# TCP chose during the upload): caught here and checked byte for byte.
vgtool tso-recv eth0 7000 40000 9 240 > /tmp/tso 2>&1 &
TR=$!
timeout 240 nc -l -p 5000 > /tmp/up 0<>/tmp/never || fail "no upload arrived"
kv up_bytes "$(wc -c < /tmp/up)"
kv up_md5 "$(md5sum < /tmp/up | cut -d' ' -f1)"
wait $TR
kv tso_rc $?
kv tso "$(tail -n 1 /tmp/tso)"
# Give L1 time to read the counters before this VM powers off.
sleep 6
pass
"""

# The e1000 guest: reach the peer, download, upload, one super-frame.
L2_E = """
kv driver "$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
kv mac "$(cat /sys/class/net/eth0/address)"
ip link set eth0 up
ip addr add 10.9.0.1/24 dev eth0
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do
    usleep 100000; i=$((i+1)); done
kv carrier "$(cat /sys/class/net/eth0/carrier)"
i=0; while ! ping -c 1 -W 1 10.9.0.2 >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 240 ] || fail "10.9.0.2 never answered a ping"; done
kv ping_tries "$i"
kv ping_ok "$(ping -c 5 -i 0.2 10.9.0.2 | grep -o '[0-9]* packets received' | cut -d' ' -f1)"
i=0; while ! wget -q -O /tmp/down http://10.9.0.2:8080/data; do
    i=$((i+1)); [ $i -lt 60 ] || fail "download failed"; sleep 1; done
kv down_bytes "$(wc -c < /tmp/down)"
kv down_md5 "$(md5sum < /tmp/down | cut -d' ' -f1)"
dd if=/dev/urandom of=/tmp/up bs=64k count=32 2>/dev/null
kv sent_md5 "$(md5sum < /tmp/up | cut -d' ' -f1)"
i=0; while ! nc 10.9.0.2 5000 < /tmp/up; do
    i=$((i+1)); [ $i -lt 30 ] || fail "upload failed"; sleep 1; done
must vgtool tso-send eth0 %(mac_v)s 10.9.0.2 7000 40000 9
kv rx_packets "$(cat /sys/class/net/eth0/statistics/rx_packets)"
kv tx_packets "$(cat /sys/class/net/eth0/statistics/tx_packets)"
kv xfer_done 1
# Give L1 time to read the counters before this VM powers off.
sleep 6
pass
""" % {"mac_v": MAC_V}


def test_e1000_and_virtio_guests_over_vxlan():
    with Rig(SCRIPT, l2_tests={"e": L2_E, "v": L2_V}, name="rig-net") as rig:
        r = rig.wait(600)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, "\n".join(
        ln for ln in v.splitlines() if "unclaimed" not in ln)[-4000:])
        for k, v in r.l2_logs.items())
    assert r.passed, "rig failed: %s\n%s\n%s" % (r.reason, r.log[-3000:], logs)
    kv = r.kv
    assert kv["e.driver"] == "e1000", kv
    assert kv["v.driver"] == "virtio_net", kv
    # The MAC came from our EEPROM through the driver's checksum check.
    assert kv["e.mac"] == MAC_E, kv
    assert kv["e.carrier"] == "1", kv
    assert kv["e.ping_ok"] == "5", kv
    assert kv["e.down_bytes"] == str(2 << 20), kv
    assert kv["e.down_md5"] == kv["v.served_md5"], kv
    assert kv["v.up_bytes"] == str(2 << 20), kv
    assert kv["v.up_md5"] == kv["e.sent_md5"], kv
    # Both directions went through the model, and TCP used TSO.
    assert int(kv["e1000_rx_frames"]) > 1000, kv
    assert int(kv["e1000_tx_frames"]) > 1000, kv
    assert int(kv["e1000_tx_tso"]) > 0, kv
    assert kv["v.tso_rc"] == "0" and kv["v.tso"].endswith(" bytes=40000"), kv
    for k in ("tx_bad_ring", "tx_bad_desc", "tx_bad_ctx", "tx_too_big", "rx_bad_ring",
              "rx_bad_desc"):
        assert kv["e1000_" + k] == "0", (k, kv)
    assert int(kv["vx_e_tx"]) > 1000 and int(kv["vx_v_tx"]) > 1000, kv
    assert kv["e_exit"] == "0" and kv["v_exit"] == "0", "%s\n%s" % (kv, logs)
    assert kv["e_logged_bad"] == "0", logs


# The same two guests, now on ONE switch: vio serve's, in L1. Each vio run
# joins a port of it through a vhost-user uplink (vio run is that port's
# virtio driver), so vio serve enforces each VM's MAC on what it sends.
SCRIPT_SERVE = """
vio serve --net id=pe,socket=/tmp/pe.sock,mac=%(mac_e)s \\
          --net id=pv,socket=/tmp/pv.sock,mac=%(mac_v)s --ctl /tmp/serve.sock \\
          > /tmp/serve.log 2>&1 &
serve_pid=$!
i=0; while [ ! -S /tmp/serve.sock ] && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done
[ -S /tmp/serve.sock ] || fail "vio serve did not start: $(cat /tmp/serve.log)"
up() { echo "type=vhost-user,id=up,socket=/tmp/$1.sock"; }
run_l2 e %(run)s --cpus 2 --initrd /rig/l2/e.initrd --ctl /tmp/e.sock \\
    --net mac=%(mac_e)s,model=e1000,id=nic0 --uplink "$(up pe)"
run_l2 v %(run)s --initrd /rig/l2/v.initrd --ctl /tmp/v.sock \\
    --net mac=%(mac_v)s,model=virtio,id=nic0 --uplink "$(up pv)"
i=0; while ! grep -q 'xfer_done=1' /tmp/e.log 2>/dev/null && [ $i -lt 3000 ]; do
    if ! l2_running e || ! l2_running v; then break; fi
    usleep 100000; i=$((i+1)); done
vio ctl -s /tmp/e.sock net.ports > /tmp/e-ports.json 2>&1
vio ctl -s /tmp/serve.sock net.ports > /tmp/serve-ports.json 2>&1
num() { grep -o "\\"$2\\": [0-9]*" "$1" | head -1 | awk '{print $2}'; }
for k in tx_frames tx_tso rx_frames tx_bad_ring tx_bad_desc tx_bad_ctx tx_too_big \\
         rx_bad_ring rx_bad_desc; do
    kv "e1000_$k" "$(num /tmp/e-ports.json $k)"
done
port() { grep -A16 "\\"id\\": \\"$1\\"" /tmp/serve-ports.json | grep -o "\\"$2\\": [0-9]*" \\
         | head -1 | awk '{print $2}'; }
for p in pe pv; do for k in tx_packets rx_packets tx_bytes rx_bytes tx_drop_spoof tx_drop_bad; do
    kv "serve_${p}_$k" "$(port $p $k)"; done; done
kv e_up_rx_bad "$(grep -A20 '"kind": "vhost-user"' /tmp/e-ports.json | grep -o '"rx_bad": [0-9]*' | awk '{print $2}')"
wait_l2_verdict v 300
wait_l2_verdict e 120
wait_l2_exit e 30
kv e_exit $?
wait_l2_exit v 30
kv v_exit $?
kill $serve_pid; wait $serve_pid
kv serve_exit $?
kv serve_logged_bad "$(grep -c 'error\\|warn' /tmp/serve.log)"
pass
""" % {"run": RUN, "mac_e": MAC_E, "mac_v": MAC_V}


def test_e1000_and_virtio_guests_on_one_vio_serve_switch():
    with Rig(SCRIPT_SERVE, l2_tests={"e": L2_E, "v": L2_V}, name="rig-net-serve") as rig:
        r = rig.wait(600)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, "\n".join(
        ln for ln in v.splitlines() if "unclaimed" not in ln)[-4000:])
        for k, v in r.l2_logs.items())
    assert r.passed, "rig failed: %s\n%s\n%s" % (r.reason, r.log[-3000:], logs)
    kv = r.kv
    assert kv["e.driver"] == "e1000" and kv["v.driver"] == "virtio_net", kv
    assert kv["e.ping_ok"] == "5", kv
    assert kv["e.down_bytes"] == str(2 << 20), kv
    assert kv["e.down_md5"] == kv["v.served_md5"], kv
    assert kv["v.up_bytes"] == str(2 << 20), kv
    assert kv["v.up_md5"] == kv["e.sent_md5"], kv
    assert int(kv["e1000_tx_tso"]) > 0, kv
    assert kv["v.tso_rc"] == "0" and kv["v.tso"].endswith(" bytes=40000"), kv
    for k in ("tx_bad_ring", "tx_bad_desc", "tx_bad_ctx", "tx_too_big", "rx_bad_ring",
              "rx_bad_desc"):
        assert kv["e1000_" + k] == "0", (k, kv)
    # Everything crossed vio serve's switch, from the right MACs: 2 MiB each
    # way (the virtio guest's as TSO super-frames, so fewer packets).
    for p in ("pe", "pv"):
        assert int(kv["serve_%s_tx_packets" % p]) > 100, kv
        assert int(kv["serve_%s_rx_packets" % p]) > 100, kv
        assert int(kv["serve_%s_tx_bytes" % p]) > 2 << 20, kv
        assert int(kv["serve_%s_rx_bytes" % p]) > 2 << 20, kv
        assert kv["serve_%s_tx_drop_spoof" % p] == "0", kv
        assert kv["serve_%s_tx_drop_bad" % p] == "0", kv
    assert kv["e_up_rx_bad"] == "0", kv
    assert kv["e_exit"] == "0" and kv["v_exit"] == "0", "%s\n%s" % (kv, logs)
    assert kv["serve_exit"] == "0", kv
