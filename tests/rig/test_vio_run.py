"""End-to-end: vio run boots Linux guests inside the nested rig.

Each test boots an L1 Linux under QEMU TCG (tests/lib/rig.py); inside it
vio run boots an L2 Debian kernel on L1's /dev/kvm. The L1 script checks
the L2's verdict, vio run's exit status and the files on the L1 side, and
reports back with VIO-KV lines, which the host asserts on.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from rig import Rig  # noqa: E402

RUN = 'vio run --kernel "$RIG_L2_BZIMAGE" --cmdline "$RIG_L2_APPEND"'
# The same kernel uncompressed (ELF), entered at its 64-bit entry.
RUN_ELF = 'vio run --kernel "$RIG_L2_KERNEL" --cmdline "$RIG_L2_APPEND"'


def run_rig(script, l2_tests, name, timeout=420):
    with Rig(script, l2_tests=l2_tests, name=name) as rig:
        r = rig.wait(timeout)
    logs = "\n".join("--- L2 %s ---\n%s" % (k, "\n".join(
        ln for ln in v.splitlines() if "unclaimed" not in ln)[-3000:])
        for k, v in r.l2_logs.items())
    assert r.passed, "rig %s failed: %s\n%s\n%s" % (name, r.reason, r.log[-3000:], logs)
    return r, logs


def test_boot_cpus_memory_poweroff():
    """The L2 boots to /init with the CPUs and memory it was given, from a
    vmlinux as from a bzImage; its poweroff ends vio run with status 0."""
    script = """
run_l2 four %s --initrd /rig/l2/sizes.initrd --mem 384M --cpus 4
wait_l2_verdict four 150
wait_l2_exit four 30
kv four_exit $?
run_l2 elf %s --initrd /rig/l2/sizes.initrd --mem 256M --cpus 2
wait_l2_verdict elf 150
wait_l2_exit elf 30
kv elf_exit $?
pass
""" % (RUN, RUN_ELF)
    l2 = """
kv cpus "$(nproc)"
kv mem_kb "$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
kv online "$(cat /sys/devices/system/cpu/online)"
pass
"""
    r, logs = run_rig(script, {"sizes": l2}, "rig-boot")
    assert r.kv["four.cpus"] == "4", r.kv
    assert r.kv["four.online"] == "0-3", r.kv
    mem = int(r.kv["four.mem_kb"])
    # MemTotal is RAM minus what the kernel keeps for itself.
    assert 300 * 1024 < mem <= 384 * 1024, "guest sees %d KiB of 384 MiB" % mem
    assert r.kv["four_exit"] == "0", "vio run exited %s after poweroff\n%s" % (
        r.kv["four_exit"], logs)
    assert "guest powered off (ACPI S5)" in logs
    assert r.kv["elf.cpus"] == "2" and r.kv["elf_exit"] == "0", r.kv


def test_devices_data_and_console():
    """In-process virtio-blk and a vhost-user disk from vio serve (both in
    L1): data the L2 writes reads back identically from the L1 files;
    virtio-rng gives bytes; virtio-console carries a line each way; the
    UART console carried every verdict line."""
    script = """
truncate -s 64M /tmp/local.img
truncate -s 64M /tmp/remote.img
vio serve --blk id=r0,path=/tmp/remote.img,socket=/tmp/r0.sock,queues=2 \\
    --ctl /tmp/serve.sock >/tmp/serve.log 2>&1 &
serve_pid=$!
i=0; while [ ! -S /tmp/r0.sock ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
mkfifo /tmp/hvc.in
run_l2 dev %s --initrd /rig/l2/dev.initrd --mem 256M --cpus 2 \\
    --blk path=/tmp/local.img,queues=2 --vhost-user-blk socket=/tmp/r0.sock,queues=2 \\
    --rng --virtio-console in=/tmp/hvc.in,out=/tmp/hvc.out --ctl /tmp/run.sock
# Answer the guest once it has said hello on hvc0.
i=0; while ! grep -q hello-from-guest /tmp/hvc.out 2>/dev/null && [ $i -lt 600 ]; do
    usleep 100000; i=$((i+1)); done
kv hvc_out "$(cat /tmp/hvc.out)"
vio ctl -s /tmp/run.sock device.list > /tmp/devs.json
kv devices "$(grep -c '"id"' /tmp/devs.json)"
echo ping-from-host > /tmp/hvc.in
wait_l2_verdict dev 150
wait_l2_exit dev 30
kv dev_exit $?
must vgtool verify /tmp/local.img 1M 8M 11
must vgtool verify /tmp/remote.img 2M 8M 12
must vgtool zeroes /tmp/local.img 9M 4M
vio ctl -s /tmp/serve.sock stats r0 > /tmp/st.json
kv remote_writes "$(grep -o '"write_bytes": [0-9]*' /tmp/st.json | awk '{s += $2} END {print s}')"
kill -TERM $serve_pid
wait $serve_pid
kv serve_exit $?
pass
""" % RUN
    l2 = """
wait_for_dev /dev/vda
wait_for_dev /dev/vdb
kv vda_queues "$(ls /sys/block/vda/mq | wc -l)"
must vgtool write /dev/vda 1M 8M 11 --direct
must vgtool write /dev/vdb 2M 8M 12 --direct
must vgtool flush /dev/vda
must vgtool flush /dev/vdb
echo 3 > /proc/sys/vm/drop_caches
must vgtool verify /dev/vda 1M 8M 11 --direct
must vgtool verify /dev/vdb 2M 8M 12 --direct
kv rngname "$(cat /sys/class/misc/hw_random/rng_current)"
kv rng "$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')"
echo hello-from-guest > /dev/hvc0
read -r line < /dev/hvc0
kv hvc_in "$line"
pass
"""
    r, logs = run_rig(script, {"dev": l2}, "rig-devices")
    kv = r.kv
    assert kv["dev.vda_queues"] == "2", kv
    assert kv["dev.rngname"].startswith("virtio_rng"), kv
    rng = kv["dev.rng"]
    assert len(rng) == 64 and rng != "0" * 64, "virtio-rng gave %r" % rng
    assert kv["dev.hvc_in"] == "ping-from-host", kv
    assert kv["hvc_out"] == "hello-from-guest", kv
    assert kv["devices"] == "4", kv
    assert kv["dev_exit"] == "0", "vio run exited %s\n%s" % (kv["dev_exit"], logs)
    assert int(kv["remote_writes"]) >= 8 << 20, kv
    assert kv["serve_exit"] == "0", kv


def test_reboot_restarts_then_poweroff():
    """A guest reboot restarts the VM (a fresh boot sees the disk); the
    poweroff after it ends vio run with 0. With --no-reboot a reboot ends
    it with 0 at once."""
    script = """
truncate -s 16M /tmp/d.img
run_l2 rb %s --initrd /rig/l2/rb.initrd --mem 256M --blk path=/tmp/d.img
# The first boot reboots without a verdict; wait for the VMM to end.
wait_l2_exit rb 240
kv rb_exit $?
kv boots "$(grep -c 'info: boot ' /tmp/rb.log)"
truncate -s 0 /tmp/d.img; truncate -s 16M /tmp/d.img
run_l2 nr %s --initrd /rig/l2/rb.initrd --mem 256M --blk path=/tmp/d.img --no-reboot
wait_l2_exit nr 150
kv nr_exit $?
kv nr_boots "$(grep -c 'info: boot ' /tmp/nr.log)"
pass
""" % (RUN, RUN)
    l2 = """
wait_for_dev /dev/vda
if [ "$(dd if=/dev/vda bs=1 count=1 2>/dev/null)" = "B" ]; then
    kv second_boot 1
    pass
fi
printf B | dd of=/dev/vda bs=1 count=1 conv=fsync 2>/dev/null
kv first_boot 1
reboot -f
"""
    r, logs = run_rig(script, {"rb": l2}, "rig-reboot")
    assert r.kv["rb_exit"] == "0", "vio run exited %s\n%s" % (r.kv["rb_exit"], logs)
    assert r.kv["boots"] == "2", "expected two boots:\n%s" % logs
    assert "rebooting" in r.l2_logs["rb"]
    assert r.kv["nr_exit"] == "0", r.kv
    assert r.kv["nr_boots"] == "1", r.kv


def test_guest_pokes_unclaimed_ports_mmio_and_pci_config():
    """A guest reading and writing ports and MMIO nobody claims, and writing
    junk into PCI config space, gets all-ones / no effect; the VMM logs each
    address once and keeps serving the disk."""
    script = """
truncate -s 16M /tmp/d.img
run_l2 poke %s --initrd /rig/l2/poke.initrd --mem 256M --blk path=/tmp/d.img
wait_l2_verdict poke 150
wait_l2_exit poke 30
kv poke_exit $?
kv port_logs "$(grep -c 'unclaimed pio address 0x2a0 ' /tmp/poke.log)"
kv mmio_logs "$(grep -c 'unclaimed mmio address 0xfe000000 ' /tmp/poke.log)"
pass
""" % RUN
    l2 = """
wait_for_dev /dev/vda
for i in 1 2 3; do
    kv port_read "$(dd if=/dev/port bs=1 skip=$((0x2a0)) count=1 2>/dev/null | od -An -tx1 | tr -d ' ')"
    printf 'Z' | dd of=/dev/port bs=1 seek=$((0x2a0)) count=1 2>/dev/null
done
kv mmio_read "$(devmem 0xfe000000 32)"
devmem 0xfe000000 32 0x12345678
kv mmio_again "$(devmem 0xfe000000 32)"
dev=$(grep -l 0x1042 /sys/bus/pci/devices/*/device | head -1)
cfg=${dev%/device}/config
kv vendor_before "$(od -An -tx2 -N2 $cfg | tr -d ' ')"
dd if=$cfg of=/tmp/cfg.bak bs=256 count=1 2>/dev/null
# Junk over the header and the capabilities: IDs, class, header type and
# capability structure are read-only; BARs move and the command register
# changes, so the saved header goes back afterwards.
head -c 256 /dev/urandom | dd of=$cfg bs=256 count=1 conv=notrunc 2>/dev/null
kv vendor_after "$(od -An -tx2 -N2 $cfg | tr -d ' ')"
kv class_after "$(od -An -tx1 -j9 -N3 $cfg | tr -d ' ')"
kv cap_after "$(od -An -tx1 -j52 -N1 $cfg | tr -d ' ')"
dd if=/tmp/cfg.bak of=$cfg bs=256 count=1 conv=notrunc 2>/dev/null
must vgtool write /dev/vda 0 4M 3 --direct
must vgtool verify /dev/vda 0 4M 3 --direct
pass
"""
    r, logs = run_rig(script, {"poke": l2}, "rig-poke")
    kv = r.kv
    assert kv["poke.port_read"] == "ff", kv
    assert kv["poke.mmio_read"].lower() == "0xffffffff", kv
    assert kv["poke.mmio_again"].lower() == "0xffffffff", kv
    assert kv["poke.vendor_before"] == "1af4" and kv["poke.vendor_after"] == "1af4", kv
    assert kv["poke.class_after"] == "008001", kv
    assert kv["poke.cap_after"] == "40", kv
    assert kv["port_logs"] == "1" and kv["mmio_logs"] == "1", "%s\n%s" % (kv, logs)
    assert kv["poke_exit"] == "0", kv
