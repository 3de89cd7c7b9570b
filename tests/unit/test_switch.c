/* Unit tests of the L2 switch (src/net/switch.c) with fake ports: VM-port
 * isolation (own unicast, broadcast, multicast, VLANs), anti-spoofing,
 * learning and flooding for uplinks, link state, bad frames, duplicate
 * ports, deliveries that fail, frames sent from inside a delivery, and the
 * flush after a burst. The switch loop is pumped on the test's thread. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/loop.h"
#include "net/switch.h"

#define MAXF 64

struct fake {
    struct vio_net_port port;
    int ret;            /* what deliver returns */
    unsigned nframes;
    uint8_t frames[MAXF][128];
    uint32_t lens[MAXF];
    unsigned flushes;
    struct fake *echo;  /* deliver sends a reply through this port */
};

static int fake_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct fake *f = p->opaque;

    if (f->ret)
        return f->ret;
    if (f->nframes < MAXF) {
        f->lens[f->nframes] = (uint32_t)vio_pkt_read(pkt, 0, f->frames[f->nframes], 128);
        f->nframes++;
    }
    if (f->echo) {
        /* An uplink answering at once, from inside the delivery. */
        uint8_t reply[20] = {0};
        struct iovec iov = {reply, sizeof(reply)};
        struct vio_pkt r = {.iov = &iov, .iovcnt = 1, .len = sizeof(reply)};
        uint8_t tmp[128];

        vio_pkt_read(pkt, 0, tmp, 12);
        memcpy(reply, tmp + 6, 6);              /* back to the sender */
        memcpy(reply + 6, "\x02\0\0\0\0\x77", 6);
        reply[12] = 0x88;
        reply[13] = 0xb5;
        vio_switch_input(&f->echo->port, &r);
    }
    return 0;
}

static void fake_flush(struct vio_net_port *p)
{
    ((struct fake *)p->opaque)->flushes++;
}

static const struct vio_net_port_ops fake_ops = {
    .kind = "fake",
    .deliver = fake_deliver,
    .flush = fake_flush,
};

static struct vio_loop loop;
static struct vio_switch *sw;

static void mk_mac(uint8_t *m, uint8_t last)
{
    static const uint8_t base[6] = {0x52, 0x54, 0, 0, 0, 0};

    memcpy(m, base, 6);
    m[5] = last;
}

static void vm_port(struct fake *f, const char *id, uint8_t last, uint16_t vlan)
{
    uint8_t m[6];

    memset(f, 0, sizeof(*f));
    mk_mac(m, last);
    vio_net_port_init(&f->port, &fake_ops, f, id, m, vlan);
    assert_int_equal(vio_switch_attach(sw, &f->port), 0);
}

static void uplink_port(struct fake *f, const char *id, uint16_t vlan)
{
    memset(f, 0, sizeof(*f));
    vio_net_port_init(&f->port, &fake_ops, f, id, NULL, vlan);
    assert_int_equal(vio_switch_attach(sw, &f->port), 0);
}

/* Send a frame dst <- src with a 2-byte tag as payload. */
static void send_frame(struct fake *from, const uint8_t *dst, const uint8_t *src, uint16_t type,
                       uint8_t tag)
{
    uint8_t fr[60] = {0};
    struct iovec iov[2] = {{fr, 7}, {fr + 7, sizeof(fr) - 7}};
    struct vio_pkt p = {.iov = iov, .iovcnt = 2, .len = sizeof(fr)};

    memcpy(fr, dst, 6);
    memcpy(fr + 6, src, 6);
    fr[12] = (uint8_t)(type >> 8);
    fr[13] = (uint8_t)type;
    fr[14] = tag;
    vio_switch_input(&from->port, &p);
}

static uint64_t ctr(_Atomic uint64_t *c)
{
    return atomic_load(c);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(vio_loop_init(&loop), 0);
    assert_int_equal(vio_switch_create(&loop, "test", &sw), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vio_switch_destroy(sw);
    vio_loop_destroy(&loop);
    return 0;
}

static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};

static void test_vm_ports_isolation(void **state)
{
    struct fake a, b, c, d;
    uint8_t ma[6], mb[6], mc[6], unknown[6];

    (void)state;
    vm_port(&a, "a", 1, 0);
    vm_port(&b, "b", 2, 0);
    vm_port(&c, "c", 3, 5);
    vm_port(&d, "d", 4, 0);
    mk_mac(ma, 1);
    mk_mac(mb, 2);
    mk_mac(mc, 3);
    mk_mac(unknown, 99);

    send_frame(&a, mb, ma, 0x0800, 1);      /* unicast to b */
    send_frame(&a, bcast, ma, 0x0806, 2);   /* broadcast: b and d, not c (VLAN 5) */
    send_frame(&a, mcast, ma, 0x0800, 3);   /* multicast: likewise */
    send_frame(&a, unknown, ma, 0x0800, 4); /* unknown unicast: no uplink, nobody */
    send_frame(&a, mc, ma, 0x0800, 5);      /* c is in another VLAN */
    assert_int_equal(b.nframes, 3);
    assert_int_equal(b.frames[0][14], 1);
    assert_int_equal(b.frames[1][14], 2);
    assert_int_equal(b.frames[2][14], 3);
    assert_int_equal(d.nframes, 2);
    assert_int_equal(c.nframes, 0);
    assert_int_equal(a.nframes, 0);
    assert_int_equal(ctr(&a.port.c.tx_packets), 5);
    assert_int_equal(ctr(&b.port.c.rx_packets), 3);
    assert_int_equal(ctr(&b.port.c.rx_bytes), 3 * 60);
    /* Every delivery was flushed (one input at a time, no batch). */
    assert_true(b.flushes >= 1 && b.flushes <= 3);

    vio_switch_detach(&a.port);
    vio_switch_detach(&b.port);
    vio_switch_detach(&c.port);
    vio_switch_detach(&d.port);
}

static void test_spoofing_and_bad_frames(void **state)
{
    struct fake a, b;
    uint8_t ma[6], mb[6], other[6];
    uint8_t shortf[10] = {0};
    struct iovec iov = {shortf, sizeof(shortf)};
    struct vio_pkt p = {.iov = &iov, .iovcnt = 1, .len = sizeof(shortf)};

    (void)state;
    vm_port(&a, "a", 1, 0);
    vm_port(&b, "b", 2, 0);
    mk_mac(ma, 1);
    mk_mac(mb, 2);
    mk_mac(other, 50);

    send_frame(&a, mb, other, 0x0800, 1);   /* not a's address */
    send_frame(&a, mb, mb, 0x0800, 2);      /* b's own address */
    send_frame(&a, mb, mcast, 0x0800, 3);   /* group source */
    send_frame(&a, mb, ma, 0x8100, 4);      /* VLAN tag from a guest */
    vio_switch_input(&a.port, &p);          /* 10-byte frame */
    p.len = VIO_NET_MAX_FRAME + 1;          /* claims more than a frame can be */
    vio_switch_input(&a.port, &p);
    assert_int_equal(b.nframes, 0);
    assert_int_equal(ctr(&a.port.c.tx_drop_spoof), 2);
    assert_int_equal(ctr(&a.port.c.tx_drop_bad), 4);
    assert_int_equal(ctr(&a.port.c.tx_packets), 0);
    send_frame(&a, mb, ma, 0x0800, 9);
    assert_int_equal(b.nframes, 1);

    vio_switch_detach(&a.port);
    vio_switch_detach(&b.port);
}

static void test_uplink_learning_and_flooding(void **state)
{
    struct fake a, up1, up2, up_other;
    uint8_t ma[6], far1[6], far2[6], unknown[6];

    (void)state;
    vm_port(&a, "a", 1, 0);
    uplink_port(&up1, "up1", 0);
    uplink_port(&up2, "up2", 0);
    uplink_port(&up_other, "upx", 9);
    mk_mac(ma, 1);
    mk_mac(far1, 101);
    mk_mac(far2, 102);
    mk_mac(unknown, 103);

    /* Unknown unicast floods to the uplinks of the VLAN only. */
    send_frame(&a, unknown, ma, 0x0800, 1);
    assert_int_equal(up1.nframes, 1);
    assert_int_equal(up2.nframes, 1);
    assert_int_equal(up_other.nframes, 0);
    /* far1 speaks through up1, far2 through up2: learned. */
    send_frame(&up1, ma, far1, 0x0800, 2);
    send_frame(&up2, ma, far2, 0x0800, 3);
    assert_int_equal(a.nframes, 2);
    send_frame(&a, far1, ma, 0x0800, 4);
    assert_int_equal(up1.nframes, 2);
    assert_int_equal(up2.nframes, 1);
    send_frame(&a, far2, ma, 0x0800, 5);
    assert_int_equal(up2.nframes, 2);
    assert_int_equal(up1.nframes, 2);
    /* far1 moves to up2. */
    send_frame(&up2, ma, far1, 0x0800, 6);
    send_frame(&a, far1, ma, 0x0800, 7);
    assert_int_equal(up2.nframes, 3);
    /* An uplink may not claim a VM port's address. */
    send_frame(&up1, far2, ma, 0x0800, 8);
    assert_int_equal(ctr(&up1.port.c.tx_drop_spoof), 1);
    /* A frame for an address learned on the sending uplink goes nowhere. */
    send_frame(&up2, far2, far1, 0x0800, 9);
    assert_int_equal(up1.nframes, 2);
    /* Detaching an uplink forgets what it taught: far2 floods again. */
    vio_switch_detach(&up2.port);
    send_frame(&a, far2, ma, 0x0800, 10);
    assert_int_equal(up1.nframes, 3);

    vio_switch_detach(&a.port);
    vio_switch_detach(&up1.port);
    vio_switch_detach(&up_other.port);
}

static void test_link_state_and_failed_delivery(void **state)
{
    struct fake a, b;
    uint8_t ma[6], mb[6];

    (void)state;
    vm_port(&a, "a", 1, 0);
    vm_port(&b, "b", 2, 0);
    mk_mac(ma, 1);
    mk_mac(mb, 2);

    atomic_store(&b.port.link_up, false);
    send_frame(&a, mb, ma, 0x0800, 1);
    assert_int_equal(ctr(&b.port.c.rx_drop_link_down), 1);
    send_frame(&b, ma, mb, 0x0800, 2);
    assert_int_equal(ctr(&b.port.c.tx_drop_link_down), 1);
    assert_int_equal(a.nframes, 0);
    atomic_store(&b.port.link_up, true);

    b.ret = -ENOBUFS;
    send_frame(&a, mb, ma, 0x0800, 3);
    b.ret = -EMSGSIZE;
    send_frame(&a, mb, ma, 0x0800, 4);
    assert_int_equal(ctr(&b.port.c.rx_drop_full), 1);
    assert_int_equal(ctr(&b.port.c.rx_drop_error), 1);
    b.ret = 0;
    send_frame(&a, mb, ma, 0x0800, 5);
    assert_int_equal(b.nframes, 1);
    assert_int_equal(b.frames[0][14], 5);

    vio_switch_detach(&a.port);
    vio_switch_detach(&b.port);
}

static void test_duplicates_refused(void **state)
{
    struct fake a, a2, b, c;
    uint8_t m[6];

    (void)state;
    vm_port(&a, "a", 1, 0);
    memset(&a2, 0, sizeof(a2));
    mk_mac(m, 1);
    vio_net_port_init(&a2.port, &fake_ops, &a2, "a2", m, 0);
    assert_int_equal(vio_switch_attach(sw, &a2.port), -EEXIST); /* same MAC, same VLAN */
    a2.port.vlan = 3;
    assert_int_equal(vio_switch_attach(sw, &a2.port), 0);       /* other VLAN: fine */
    memset(&b, 0, sizeof(b));
    mk_mac(m, 7);
    vio_net_port_init(&b.port, &fake_ops, &b, "a", m, 0);
    assert_int_equal(vio_switch_attach(sw, &b.port), -EEXIST);  /* same id */
    assert_ptr_equal(vio_switch_find(sw, "a"), &a.port);
    assert_null(vio_switch_find(sw, "zz"));
    memset(&c, 0, sizeof(c));
    vio_switch_detach(&c.port); /* never attached: no-op */

    vio_switch_detach(&a.port);
    vio_switch_detach(&a2.port);
}

static void test_reply_from_inside_delivery_and_batch(void **state)
{
    struct fake a, up;
    uint8_t ma[6];

    (void)state;
    vm_port(&a, "a", 1, 0);
    uplink_port(&up, "up", 0);
    up.echo = &up;
    mk_mac(ma, 1);

    /* The uplink answers from inside its deliver: the answer is deferred
     * until the outer frame is done, then reaches a. */
    send_frame(&a, bcast, ma, 0x0806, 1);
    assert_int_equal(up.nframes, 1);
    assert_int_equal(a.nframes, 1);
    assert_memory_equal(a.frames[0], ma, 6);

    /* In a batch, a is flushed once at the end. */
    a.flushes = 0;
    vio_switch_batch_begin(sw);
    for (int i = 0; i < 5; i++)
        send_frame(&a, bcast, ma, 0x0806, (uint8_t)i);
    assert_int_equal(a.flushes, 0);
    vio_switch_batch_end(sw);
    assert_int_equal(a.nframes, 6);
    assert_int_equal(a.flushes, 1);

    vio_switch_detach(&a.port);
    vio_switch_detach(&up.port);
}

static void test_mac_text(void **state)
{
    uint8_t m[6];
    char buf[18];

    (void)state;
    assert_int_equal(vio_net_parse_mac("52:54:00:Ab:cd:ef", m), 0);
    vio_net_format_mac(m, buf);
    assert_string_equal(buf, "52:54:00:ab:cd:ef");
    assert_int_equal(vio_net_parse_mac("52:54:00:ab:cd", m), -EINVAL);
    assert_int_equal(vio_net_parse_mac("52:54:00:ab:cd:ef:", m), -EINVAL);
    assert_int_equal(vio_net_parse_mac("52-54-00-ab-cd-ef", m), -EINVAL);
    assert_int_equal(vio_net_parse_mac("5:54:00:ab:cd:ef", m), -EINVAL);
    assert_int_equal(vio_net_parse_mac("", m), -EINVAL);
    assert_int_equal(vio_net_parse_mac("zz:54:00:ab:cd:ef", m), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vm_ports_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spoofing_and_bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uplink_learning_and_flooding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_state_and_failed_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_from_inside_delivery_and_batch, setup,
                                        teardown),
        cmocka_unit_test(test_mac_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
