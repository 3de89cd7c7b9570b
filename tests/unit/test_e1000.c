/* Unit tests of the emulated 82540EM (src/emul/e1000.c). The test is the
 * driver: it reads the EEPROM bit by bit and through EERD, talks to the PHY
 * through MDIC, builds transmit and receive rings in a fake guest memory
 * and checks the frames a fake switch port gets and the ones it sends
 * back, the interrupt causes and the line. Then bad input: unusable rings,
 * buffers outside guest memory, zero and oversized lengths, offload
 * contexts that do not fit, a ring whose tail runs ahead forever: each is
 * dropped and counted and the model keeps working. The switch loop is
 * pumped on the test's thread. The last test puts the model on a PCI bus
 * of a real VM (needs /dev/kvm) to check config space, BARs and INTx. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gmem.h"
#include "core/loop.h"
#include "emul/e1000.h"
#include "emul/e1000_regs.h"
#include "net/switch.h"
#include "vmm/pci.h"
#include "vmm/vm.h"

#define MEM_GPA  0x100000ull
#define MEM_SIZE (4u << 20)
#define TXR_GPA  0x100000ull /* transmit ring */
#define RXR_GPA  0x110000ull /* receive ring */
#define TXB_GPA  0x200000ull /* transmit buffers */
#define RXB_GPA  0x300000ull /* receive buffers, 16 KiB each */
#define OUTSIDE  0x40000000ull
#define MAXF     64
#define FRAME_MAX 2048

static const uint8_t e_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t p_mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01};

/* The fake peer port on the switch. */
struct peer {
    struct vio_net_port port;
    unsigned nframes;
    uint8_t frames[MAXF][FRAME_MAX];
    uint32_t lens[MAXF];
    unsigned count;    /* every frame, also those past MAXF */
    uint32_t last_len;
};

struct fx {
    uint8_t *ram;
    struct vio_gmem mem;
    struct vio_loop loop;
    struct vio_switch *sw;
    struct vio_e1000 *e;
    struct peer peer;
    bool irq;
    unsigned irq_changes;
    uint32_t tdt, rdt; /* driver side */
    unsigned tn, rn;   /* ring sizes */
};

static struct fx *F;

static int peer_deliver(struct vio_net_port *p, const struct vio_pkt *pkt)
{
    struct peer *pe = p->opaque;

    if (pe->nframes < MAXF) {
        pe->lens[pe->nframes] = (uint32_t)vio_pkt_read(pkt, 0, pe->frames[pe->nframes],
                                                       FRAME_MAX);
        pe->nframes++;
    }
    pe->count++;
    pe->last_len = pkt->len;
    return 0;
}

static const struct vio_net_port_ops peer_ops = {.kind = "fake", .deliver = peer_deliver};

static void on_irq(void *opaque, bool level)
{
    struct fx *f = opaque;

    f->irq = level;
    f->irq_changes++;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct vio_e1000_opts o = {.id = "e0"};

    assert_non_null(f);
    f->ram = calloc(1, MEM_SIZE);
    assert_non_null(f->ram);
    vio_gmem_init(&f->mem);
    assert_int_equal(vio_gmem_add_ptr(&f->mem, f->ram, MEM_GPA, MEM_SIZE, 0), 0);
    assert_int_equal(vio_loop_init(&f->loop), 0);
    assert_int_equal(vio_switch_create(&f->loop, "t", &f->sw), 0);
    memcpy(o.mac, e_mac, 6);
    assert_int_equal(vio_e1000_new(&o, &f->mem, f->sw, on_irq, f, &f->e), 0);
    vio_net_port_init(&f->peer.port, &peer_ops, &f->peer, "peer", p_mac, 0);
    assert_int_equal(vio_switch_attach(f->sw, &f->peer.port), 0);
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    vio_switch_detach(&f->peer.port);
    vio_e1000_free(f->e);
    vio_switch_destroy(f->sw);
    vio_loop_destroy(&f->loop);
    free(f->ram);
    free(f);
    return 0;
}

/* ---- driver helpers ---- */

static uint32_t rd(struct fx *f, uint32_t off)
{
    return vio_e1000_reg_read(f->e, off);
}

static void wr(struct fx *f, uint32_t off, uint32_t v)
{
    vio_e1000_reg_write(f->e, off, v);
}

static uint8_t *g(struct fx *f, uint64_t gpa)
{
    assert_true(gpa >= MEM_GPA && gpa < MEM_GPA + MEM_SIZE);
    return f->ram + (gpa - MEM_GPA);
}

static void pump(struct fx *f)
{
    for (int i = 0; i < 1000 && vio_loop_run_once(&f->loop, 0) > 0; i++)
        ;
}

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t rbe16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rbe32(const uint8_t *p)
{
    return (uint32_t)rbe16(p) << 16 | rbe16(p + 2);
}

static void wbe16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Ones' complement sum, written here independently of the model's. */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static uint32_t crc32_eth(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* ---- EEPROM, the way Linux's e1000 reads it ---- */

static void ee_clock(struct fx *f, uint32_t *eecd)
{
    wr(f, E1K_EECD, *eecd | E1K_EECD_SK);
    wr(f, E1K_EECD, *eecd & ~E1K_EECD_SK);
}

static void ee_out(struct fx *f, uint32_t *eecd, uint16_t data, int count)
{
    for (int i = count - 1; i >= 0; i--) {
        *eecd &= ~E1K_EECD_DI;
        if (data & (1u << i))
            *eecd |= E1K_EECD_DI;
        wr(f, E1K_EECD, *eecd);
        ee_clock(f, eecd);
    }
    *eecd &= ~E1K_EECD_DI;
    wr(f, E1K_EECD, *eecd);
}

static uint16_t ee_bitbang(struct fx *f, unsigned addr)
{
    uint32_t eecd = rd(f, E1K_EECD);
    uint16_t v = 0;

    eecd |= E1K_EECD_REQ;
    wr(f, E1K_EECD, eecd);
    assert_true(rd(f, E1K_EECD) & E1K_EECD_GNT);
    eecd &= ~(E1K_EECD_DI | E1K_EECD_SK);
    wr(f, E1K_EECD, eecd);
    eecd |= E1K_EECD_CS;
    wr(f, E1K_EECD, eecd);
    ee_out(f, &eecd, E1K_EE_OP_READ, 3);
    ee_out(f, &eecd, (uint16_t)addr, 6);
    for (int i = 0; i < 16; i++) {
        wr(f, E1K_EECD, eecd | E1K_EECD_SK);
        v = (uint16_t)(v << 1 | !!(rd(f, E1K_EECD) & E1K_EECD_DO));
        wr(f, E1K_EECD, eecd & ~E1K_EECD_SK);
    }
    /* release */
    eecd &= ~(E1K_EECD_CS | E1K_EECD_DI);
    wr(f, E1K_EECD, eecd);
    ee_clock(f, &eecd);
    wr(f, E1K_EECD, eecd & ~E1K_EECD_REQ);
    return v;
}

static uint16_t ee_eerd(struct fx *f, unsigned addr)
{
    uint32_t v;

    wr(f, E1K_EERD, addr << E1K_EERD_ADDR_SHIFT | E1K_EERD_START);
    v = rd(f, E1K_EERD);
    assert_true(v & E1K_EERD_DONE);
    return (uint16_t)(v >> E1K_EERD_DATA_SHIFT);
}

static void test_eeprom(void **state)
{
    struct fx *f = *state;
    uint16_t sum = 0, w[64];

    (void)state;
    assert_int_equal(rd(f, E1K_EECD) & E1K_EECD_SIZE, 0); /* 64 words */
    assert_true(rd(f, E1K_EECD) & E1K_EECD_PRES);
    for (unsigned i = 0; i < 64; i++) {
        w[i] = ee_bitbang(f, i);
        assert_int_equal(w[i], ee_eerd(f, i));
        sum = (uint16_t)(sum + w[i]);
    }
    assert_int_equal(sum, 0xbaba);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i] & 0xff, e_mac[2 * i]);
        assert_int_equal(w[i] >> 8, e_mac[2 * i + 1]);
    }
    assert_int_equal(w[0x0d], 0x100e);
    assert_int_equal(w[0x0e], 0x8086);
    /* RAR0 holds the EEPROM's address after reset. */
    assert_int_equal(rd(f, E1K_RA), 0x12005452);
    assert_int_equal(rd(f, E1K_RA + 4), 0x5634 | E1K_RAH_AV);
    /* A write command (EWEN, then WRITE) is ignored: the EEPROM is ROM. */
    {
        uint32_t eecd = E1K_EECD_CS;

        wr(f, E1K_EECD, eecd);
        ee_out(f, &eecd, 0x13, 5);
        ee_out(f, &eecd, 0, 4);
        wr(f, E1K_EECD, 0);
        wr(f, E1K_EECD, eecd);
        ee_out(f, &eecd, 0x5, 3);
        ee_out(f, &eecd, 0, 6);
        ee_out(f, &eecd, 0xdead, 16);
        wr(f, E1K_EECD, 0);
    }
    assert_int_equal(ee_bitbang(f, 0), w[0]);
    /* EERD beyond the EEPROM reads all-ones, never past the array. */
    assert_int_equal(ee_eerd(f, 200), 0xffff);
}

/* ---- PHY and link ---- */

static int mdic(struct fx *f, unsigned phy, unsigned reg, bool write, uint16_t data,
                uint16_t *out)
{
    uint32_t v = (uint32_t)reg << E1K_MDIC_REG_SHIFT | phy << E1K_MDIC_PHY_SHIFT |
                 (write ? E1K_MDIC_OP_WRITE | data : E1K_MDIC_OP_READ);

    wr(f, E1K_MDIC, v);
    v = rd(f, E1K_MDIC);
    assert_true(v & E1K_MDIC_READY);
    if (v & E1K_MDIC_ERROR)
        return -EIO;
    if (out)
        *out = (uint16_t)v;
    return 0;
}

static uint16_t phy_rd(struct fx *f, unsigned reg)
{
    uint16_t v = 0;

    assert_int_equal(mdic(f, 1, reg, false, 0, &v), 0);
    return v;
}

static void test_link_and_phy(void **state)
{
    struct fx *f = *state;

    assert_true(rd(f, E1K_STATUS) & E1K_STATUS_LU);
    assert_true(rd(f, E1K_STATUS) & E1K_STATUS_FD);
    assert_int_equal(rd(f, E1K_STATUS) & (3u << 6), E1K_STATUS_SPEED_1000);
    /* Linux's detection: M88E1011 = 0x01410c20 (revision masked). */
    assert_int_equal(phy_rd(f, E1K_PHY_ID1), 0x0141);
    assert_int_equal(phy_rd(f, E1K_PHY_ID2) & 0xfff0, 0x0c20);
    phy_rd(f, E1K_PHY_STATUS);
    assert_int_equal(phy_rd(f, E1K_PHY_STATUS) & 0x24, 0x24); /* link, autoneg done */
    assert_true(phy_rd(f, E1K_PHY_SPEC_STATUS) & 0x0400);
    /* Advertisement is writable; status is not; reset restores defaults. */
    assert_int_equal(mdic(f, 1, E1K_PHY_ADV, true, 0x0061, NULL), 0);
    assert_int_equal(phy_rd(f, E1K_PHY_ADV), 0x0061);
    assert_int_equal(mdic(f, 1, E1K_PHY_STATUS, true, 0, NULL), 0);
    assert_int_equal(phy_rd(f, E1K_PHY_STATUS) & 0x24, 0x24);
    assert_int_equal(mdic(f, 1, E1K_PHY_CTRL, true, 0x1340 | 0x8000, NULL), 0);
    assert_int_equal(phy_rd(f, E1K_PHY_CTRL) & 0x8200, 0); /* self-clearing */
    assert_int_equal(phy_rd(f, E1K_PHY_ADV), 0x01e1);
    /* Nothing at PHY address 2. */
    assert_int_equal(mdic(f, 2, E1K_PHY_ID1, false, 0, NULL), -EIO);

    /* Cable out: LSC, and the interrupt when it is enabled. */
    rd(f, E1K_ICR);
    wr(f, E1K_IMS, E1K_ICR_LSC);
    assert_false(f->irq);
    vio_e1000_set_link(f->e, false);
    assert_true(f->irq);
    assert_false(rd(f, E1K_STATUS) & E1K_STATUS_LU);
    assert_int_equal(phy_rd(f, E1K_PHY_STATUS) & 0x04, 0);
    assert_int_equal(rd(f, E1K_ICR), E1K_ICR_LSC);
    assert_false(f->irq); /* reading ICR cleared it */
    vio_e1000_set_link(f->e, true);
    assert_true(rd(f, E1K_STATUS) & E1K_STATUS_LU);
    assert_true(f->irq);
}

static void test_interrupt_registers(void **state)
{
    struct fx *f = *state;

    rd(f, E1K_ICR);
    assert_false(f->irq);
    /* ICS sets causes; nothing is delivered while masked. */
    wr(f, E1K_ICS, E1K_ICR_RXT0 | E1K_ICR_TXDW);
    assert_false(f->irq);
    wr(f, E1K_IMS, E1K_ICR_TXDW);
    assert_true(f->irq);
    assert_int_equal(rd(f, E1K_IMS), E1K_ICR_TXDW);
    wr(f, E1K_IMC, E1K_ICR_TXDW);
    assert_false(f->irq);
    assert_int_equal(rd(f, E1K_IMS), 0);
    wr(f, E1K_IMS, E1K_ICR_RXT0 | E1K_ICR_LSC);
    assert_true(f->irq);
    /* Writing 1s to ICR clears those causes. */
    wr(f, E1K_ICR, E1K_ICR_RXT0);
    assert_false(f->irq);
    assert_int_equal(rd(f, E1K_ICR), E1K_ICR_TXDW);
    assert_int_equal(rd(f, E1K_ICR), 0);
    /* Moderation registers are stored and otherwise ignored. */
    wr(f, E1K_ITR, 0x1234);
    assert_int_equal(rd(f, E1K_ITR), 0x1234);
    /* A reset masks and clears everything. */
    wr(f, E1K_ICS, E1K_ICR_LSC);
    assert_true(f->irq);
    wr(f, E1K_CTRL, rd(f, E1K_CTRL) | E1K_CTRL_RST);
    assert_false(f->irq);
    assert_int_equal(rd(f, E1K_IMS), 0);
    assert_int_equal(rd(f, E1K_CTRL) & E1K_CTRL_RST, 0);
    /* Statistics are read-only and clear on read. */
    wr(f, E1K_GPRC, 77);
    assert_int_equal(rd(f, E1K_GPRC), 0);
}

/* ---- transmit ---- */

static void tx_setup(struct fx *f, unsigned n)
{
    f->tn = n;
    f->tdt = 0;
    memset(g(f, TXR_GPA), 0, 16 * n);
    wr(f, E1K_TDBAL, (uint32_t)TXR_GPA);
    wr(f, E1K_TDBAH, 0);
    wr(f, E1K_TDLEN, 16 * n);
    wr(f, E1K_TDH, 0);
    wr(f, E1K_TDT, 0);
    wr(f, E1K_TCTL, E1K_TCTL_EN | E1K_TCTL_PSP);
}

static uint8_t *tx_desc(struct fx *f)
{
    uint8_t *d = g(f, TXR_GPA + 16ull * f->tdt);

    memset(d, 0, 16);
    f->tdt = (f->tdt + 1) % f->tn;
    return d;
}

static void tx_legacy(struct fx *f, uint64_t addr, uint16_t len, uint8_t cmd)
{
    uint8_t *d = tx_desc(f);

    st64(d, addr);
    st16(d + 8, len);
    d[11] = cmd;
}

static void tx_data(struct fx *f, uint64_t addr, uint32_t len, uint8_t dcmd, uint8_t popts)
{
    uint8_t *d = tx_desc(f);

    st64(d, addr);
    st32(d + 8, (len & 0xfffff) | E1K_TXD_DTYP_DATA << 20 |
                    (uint32_t)(dcmd | E1K_TXD_CMD_DEXT) << 24);
    d[13] = popts;
}

static void tx_ctx(struct fx *f, uint8_t ipcss, uint8_t ipcso, uint16_t ipcse, uint8_t tucss,
                   uint8_t tucso, uint16_t tucse, uint32_t paylen, uint8_t tucmd, uint8_t hdrlen,
                   uint16_t mss)
{
    uint8_t *d = tx_desc(f);

    d[0] = ipcss;
    d[1] = ipcso;
    st16(d + 2, ipcse);
    d[4] = tucss;
    d[5] = tucso;
    st16(d + 6, tucse);
    st32(d + 8, (paylen & 0xfffff) | (uint32_t)(tucmd | E1K_TXD_CMD_DEXT) << 24);
    d[13] = hdrlen;
    st16(d + 14, mss);
}

static void tx_go(struct fx *f)
{
    wr(f, E1K_TDT, f->tdt);
    pump(f);
}

static bool tx_done(struct fx *f, unsigned idx)
{
    return g(f, TXR_GPA + 16ull * idx)[12] & E1K_TXD_STAT_DD;
}

/* An Ethernet + IPv4 + TCP packet of @payload bytes at @buf (returns its
 * length). @pseudo_len: put the TCP length in the pseudo-header sum (plain
 * checksum offload, as Linux prepares it) or not (TSO). */
static uint32_t mk_tcp4(uint8_t *buf, uint32_t payload, bool pseudo_len)
{
    uint8_t *ip = buf + 14, *tcp = ip + 20;
    uint32_t tcplen = 20 + payload, s;

    memcpy(buf, p_mac, 6);
    memcpy(buf + 6, e_mac, 6);
    wbe16(buf + 12, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    wbe16(ip + 2, pseudo_len ? (uint16_t)(20 + tcplen) : 0);
    wbe16(ip + 4, 0x1234);
    wbe16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
    memset(tcp, 0, 20);
    wbe16(tcp, 1000);
    wbe16(tcp + 2, 2000);
    memcpy(tcp + 4, "\x11\x22\x33\x44", 4);
    tcp[12] = 5 << 4;
    tcp[13] = 0x80 | 0x10 | 0x08 | 0x01; /* CWR ACK PSH FIN */
    wbe16(tcp + 14, 0xffff);
    for (uint32_t i = 0; i < payload; i++)
        tcp[20 + i] = (uint8_t)(i * 7 + 3);
    s = sum16(ip + 12, 8, 6 + (pseudo_len ? tcplen : 0));
    wbe16(tcp + 16, fold(s)); /* the partial sum, not inverted */
    return 14 + 20 + tcplen;
}

static bool ip4_ok(const uint8_t *ip)
{
    return fold(sum16(ip, 20, 0)) == 0xffff;
}

static bool tcp4_ok(const uint8_t *ip, uint32_t tcplen)
{
    uint32_t s = sum16(ip + 12, 8, 6 + tcplen);

    return fold(sum16(ip + 20, tcplen, s)) == 0xffff;
}

static void test_tx_legacy(void **state)
{
    struct fx *f = *state;
    uint8_t *b = g(f, TXB_GPA);
    uint32_t len = mk_tcp4(b, 100, true);

    tx_setup(f, 8);
    rd(f, E1K_ICR);
    wr(f, E1K_IMS, E1K_ICR_TXDW);
    /* One packet in two buffers, RS on the last. */
    tx_legacy(f, TXB_GPA, 20, E1K_TXD_CMD_IFCS);
    tx_legacy(f, TXB_GPA + 20, (uint16_t)(len - 20),
              E1K_TXD_CMD_EOP | E1K_TXD_CMD_IFCS | E1K_TXD_CMD_RS);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 1);
    assert_int_equal(f->peer.lens[0], len);
    assert_memory_equal(f->peer.frames[0], b, len);
    assert_false(tx_done(f, 0)); /* no RS there */
    assert_true(tx_done(f, 1));
    assert_int_equal(rd(f, E1K_TDH), 2);
    assert_true(f->irq);
    assert_int_equal(rd(f, E1K_ICR) & (E1K_ICR_TXDW | E1K_ICR_TXQE),
                     E1K_ICR_TXDW | E1K_ICR_TXQE);
    assert_int_equal(rd(f, E1K_GPTC), 1);
    assert_int_equal(rd(f, E1K_GPTC), 0);
    assert_int_equal(rd(f, E1K_GOTCL), len);
    assert_int_equal(rd(f, E1K_GOTCH), 0);
    assert_int_equal(rd(f, E1K_GOTCL), 0);

    /* Legacy checksum insertion (IC, CSS, CSO) over the TCP segment. */
    mk_tcp4(b, 100, true);
    {
        uint8_t *d;

        tx_legacy(f, TXB_GPA, (uint16_t)len,
                  E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS | E1K_TXD_CMD_IC);
        d = g(f, TXR_GPA + 16ull * ((f->tdt + f->tn - 1) % f->tn));
        d[10] = 14 + 20 + 16; /* CSO */
        d[13] = 14 + 20;      /* CSS */
    }
    tx_go(f);
    assert_int_equal(f->peer.nframes, 2);
    assert_true(tcp4_ok(f->peer.frames[1] + 14, len - 34));
    /* The wrap-around: more packets than the ring has slots. */
    for (int i = 0; i < 10; i++) {
        tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
        tx_go(f);
    }
    assert_int_equal(f->peer.nframes, 12);
    assert_int_equal(rd(f, E1K_TDH), f->tdt);
}

static void test_tx_checksum_context(void **state)
{
    struct fx *f = *state;
    uint8_t *b = g(f, TXB_GPA);
    uint32_t len = mk_tcp4(b, 333, true);
    uint8_t *ip = f->peer.frames[0] + 14;

    tx_setup(f, 16);
    /* Linux's e1000_tx_csum: TUCSS, TUCSO, TUCSE 0; data with TXSM. And
     * the IPv4 header checksum with IXSM. */
    tx_ctx(f, 14, 14 + 10, 14 + 19, 34, 34 + 16, 0, 0, E1K_TUCMD_TCP | E1K_TUCMD_IP, 0, 0);
    tx_data(f, TXB_GPA, 50, 0, E1K_TXD_POPTS_TXSM | E1K_TXD_POPTS_IXSM);
    tx_data(f, TXB_GPA + 50, len - 50, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS, 0);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 1);
    assert_int_equal(f->peer.lens[0], len);
    assert_true(ip4_ok(ip));
    assert_true(tcp4_ok(ip, len - 34));
    assert_true(tx_done(f, 2));
    /* Without POPTS the packet goes as it is. */
    mk_tcp4(b, 333, true);
    tx_data(f, TXB_GPA, len, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS, 0);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 2);
    assert_memory_equal(f->peer.frames[1], b, len);
}

static void test_tx_tso(void **state)
{
    struct fx *f = *state;
    uint8_t *b = g(f, TXB_GPA);
    const uint32_t payload = 3500, mss = 1000, hdr = 54;
    uint32_t len = mk_tcp4(b, payload, false), off = 0;
    struct vio_e1000_stats st;

    tx_setup(f, 32);
    tx_ctx(f, 14, 14 + 10, 14 + 19, 34, 34 + 16, 0, payload,
           E1K_TUCMD_TCP | E1K_TUCMD_IP | E1K_TXD_CMD_TSE, hdr, mss);
    /* As Linux: header and payload split over 4 KiB-ish descriptors. */
    tx_data(f, TXB_GPA, hdr, E1K_TXD_CMD_TSE, E1K_TXD_POPTS_TXSM | E1K_TXD_POPTS_IXSM);
    tx_data(f, TXB_GPA + hdr, 2000, E1K_TXD_CMD_TSE, E1K_TXD_POPTS_TXSM | E1K_TXD_POPTS_IXSM);
    tx_data(f, TXB_GPA + hdr + 2000, len - hdr - 2000,
            E1K_TXD_CMD_TSE | E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS, 0);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 4);
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *fr = f->peer.frames[i], *ip = fr + 14, *tcp = ip + 20;
        uint32_t chunk = i < 3 ? mss : payload - 3 * mss;

        assert_int_equal(f->peer.lens[i], hdr + chunk);
        assert_int_equal(rbe16(ip + 2), 40 + chunk);
        assert_int_equal(rbe16(ip + 4), 0x1234 + i);
        assert_true(ip4_ok(ip));
        assert_int_equal(rbe32(tcp + 4), 0x11223344 + off);
        assert_true(tcp4_ok(ip, 20 + chunk));
        /* FIN and PSH on the last segment only, CWR on the first only. */
        assert_int_equal(tcp[13] & 0x09, i == 3 ? 0x09 : 0);
        assert_int_equal(tcp[13] & 0x80, i == 0 ? 0x80 : 0);
        assert_memory_equal(tcp + 20, b + hdr + off, chunk);
        off += chunk;
    }
    assert_int_equal(rd(f, E1K_TSCTC), 1);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_tso, 1);
    assert_int_equal(st.tx_frames, 4);

    /* A TSO context whose header does not fit is dropped and counted; the
     * following plain checksum packet still uses its own context. */
    tx_ctx(f, 14, 24, 33, 34, 50, 0, payload, E1K_TUCMD_TCP | E1K_TUCMD_IP | E1K_TXD_CMD_TSE,
           250, mss);
    tx_data(f, TXB_GPA, len, E1K_TXD_CMD_TSE | E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS,
            E1K_TXD_POPTS_TXSM);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 4);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_bad_ctx, 1);
    assert_int_equal(rd(f, E1K_TSCTFC), 1);
    len = mk_tcp4(b, 200, true);
    tx_ctx(f, 14, 24, 33, 34, 50, 0, 0, E1K_TUCMD_TCP | E1K_TUCMD_IP, 0, 0);
    tx_data(f, TXB_GPA, len, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS, E1K_TXD_POPTS_TXSM);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 5);
    assert_true(tcp4_ok(f->peer.frames[4] + 14, len - 34));
}

/* ---- receive ---- */

static void rx_setup(struct fx *f, unsigned n, unsigned bufs, uint32_t rctl)
{
    f->rn = n;
    memset(g(f, RXR_GPA), 0, 16 * n);
    for (unsigned i = 0; i < n; i++)
        st64(g(f, RXR_GPA + 16ull * i), RXB_GPA + 16384ull * i);
    wr(f, E1K_RDBAL, (uint32_t)RXR_GPA);
    wr(f, E1K_RDBAH, 0);
    wr(f, E1K_RDLEN, 16 * n);
    wr(f, E1K_RDH, 0);
    f->rdt = bufs;
    wr(f, E1K_RDT, bufs);
    wr(f, E1K_RCTL, rctl);
}

static void peer_send(struct fx *f, const uint8_t *dst, uint32_t len, uint8_t tag)
{
    static uint8_t fr[20000];
    struct iovec iov[2] = {{fr, 9}, {fr + 9, len - 9}};
    struct vio_pkt p = {.iov = iov, .iovcnt = 2, .len = len};

    memcpy(fr, dst, 6);
    memcpy(fr + 6, p_mac, 6);
    wbe16(fr + 12, 0x88b5);
    for (uint32_t i = 14; i < len; i++)
        fr[i] = (uint8_t)(tag + i);
    vio_switch_input(&f->peer.port, &p);
}

static uint8_t *rxd(struct fx *f, unsigned i)
{
    return g(f, RXR_GPA + 16ull * i);
}

static uint8_t *rxb(struct fx *f, unsigned i)
{
    return g(f, RXB_GPA + 16384ull * i);
}

static void test_rx(void **state)
{
    struct fx *f = *state;
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
    struct vio_e1000_stats st;
    uint8_t *d;
    uint32_t c;

    rx_setup(f, 8, 7, E1K_RCTL_EN | E1K_RCTL_BAM);
    rd(f, E1K_ICR);
    wr(f, E1K_IMS, E1K_ICR_RXT0);
    /* A 42-byte frame arrives padded to 60 with its 4-byte FCS. */
    peer_send(f, e_mac, 42, 1);
    d = rxd(f, 0);
    assert_int_equal(d[12], E1K_RXD_STAT_DD | E1K_RXD_STAT_EOP | E1K_RXD_STAT_IXSM);
    assert_int_equal(d[8] | d[9] << 8, 64);
    assert_int_equal(d[13], 0);
    assert_memory_equal(rxb(f, 0), e_mac, 6);
    assert_int_equal(rxb(f, 0)[41], (uint8_t)(1 + 41));
    assert_int_equal(rxb(f, 0)[42], 0);
    c = crc32_eth(rxb(f, 0), 60);
    assert_int_equal(rxb(f, 0)[60] | rxb(f, 0)[61] << 8 | rxb(f, 0)[62] << 16 |
                         (uint32_t)rxb(f, 0)[63] << 24, c);
    assert_int_equal(rd(f, E1K_RDH), 1);
    assert_true(f->irq);
    assert_true(rd(f, E1K_ICR) & E1K_ICR_RXT0);
    assert_false(f->irq);
    assert_int_equal(rd(f, E1K_GPRC), 1);
    /* Broadcast with BAM; multicast only with MPE or a table hit. */
    peer_send(f, bcast, 100, 2);
    assert_true(rxd(f, 1)[12] & E1K_RXD_STAT_DD);
    peer_send(f, mcast, 100, 3);
    assert_int_equal(rd(f, E1K_RDH), 2);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.rx_filtered, 1);
    wr(f, E1K_RCTL, rd(f, E1K_RCTL) | E1K_RCTL_MPE);
    peer_send(f, mcast, 100, 3);
    assert_int_equal(rd(f, E1K_RDH), 3);
    wr(f, E1K_RCTL, rd(f, E1K_RCTL) & ~E1K_RCTL_MPE);
    {
        /* MO 00: hash = address bits 47:36 = 0xfb0 >> 4 | ... */
        unsigned h = ((mcast[4] >> 4) | (unsigned)mcast[5] << 4) & 0xfff;

        wr(f, E1K_MTA + 4 * (h >> 5), 1u << (h & 31));
    }
    peer_send(f, mcast, 100, 3);
    assert_int_equal(rd(f, E1K_RDH), 4);
    /* SECRC strips the FCS. */
    wr(f, E1K_RCTL, rd(f, E1K_RCTL) | E1K_RCTL_SECRC);
    peer_send(f, e_mac, 200, 4);
    assert_int_equal(rxd(f, 4)[8] | rxd(f, 4)[9] << 8, 200);
    /* Small buffers (256 B): a 600-byte frame takes three descriptors. */
    rx_setup(f, 8, 7, E1K_RCTL_EN | 3u << E1K_RCTL_BSIZE_SHIFT | E1K_RCTL_SECRC);
    peer_send(f, e_mac, 600, 5);
    assert_int_equal(rd(f, E1K_RDH), 3);
    assert_int_equal(rxd(f, 0)[12] & E1K_RXD_STAT_EOP, 0);
    assert_int_equal(rxd(f, 1)[12] & E1K_RXD_STAT_EOP, 0);
    assert_true(rxd(f, 2)[12] & E1K_RXD_STAT_EOP);
    assert_int_equal(rxd(f, 2)[8] | rxd(f, 2)[9] << 8, 600 - 512);
    assert_int_equal(rxb(f, 1)[0], (uint8_t)(5 + 256));
    /* Full ring: the frame is missed (RXO, MPC) and nothing is written. */
    peer_send(f, e_mac, 1200, 6); /* needs 5, 4 left */
    assert_int_equal(rd(f, E1K_RDH), 3);
    assert_true(rd(f, E1K_ICR) & E1K_ICR_RXO);
    assert_int_equal(rd(f, E1K_MPC), 1);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.rx_no_buf, 1);
    /* Too long without LPE; fine with it and 16 KiB buffers. */
    rx_setup(f, 8, 7, E1K_RCTL_EN);
    peer_send(f, e_mac, 3000, 7);
    assert_int_equal(rd(f, E1K_RDH), 0);
    rx_setup(f, 8, 7, E1K_RCTL_EN | E1K_RCTL_LPE | E1K_RCTL_BSEX | 1u << E1K_RCTL_BSIZE_SHIFT);
    peer_send(f, e_mac, 9000, 7);
    assert_int_equal(rd(f, E1K_RDH), 1);
    assert_int_equal(rxd(f, 0)[8] | rxd(f, 0)[9] << 8, 9004);
    /* Receiver off: nothing written. */
    wr(f, E1K_RCTL, 0);
    peer_send(f, e_mac, 100, 8);
    assert_int_equal(rd(f, E1K_RDH), 1);
    /* RDMTS: the free-descriptor threshold interrupt. */
    rx_setup(f, 8, 7, E1K_RCTL_EN | E1K_RCTL_SECRC);
    rd(f, E1K_ICR);
    for (int i = 0; i < 3; i++)
        peer_send(f, e_mac, 100, 9);
    assert_true(rd(f, E1K_ICR) & E1K_ICR_RXDMT0); /* 4 left of 8 */
}

/* ---- bad input ---- */

static void test_bad_tx_input(void **state)
{
    struct fx *f = *state;
    struct vio_e1000_stats st;
    uint8_t *b = g(f, TXB_GPA);

    memcpy(b, p_mac, 6);
    memcpy(b + 6, e_mac, 6);
    wbe16(b + 12, 0x88b5);

    /* TDLEN not a multiple of 128, and huge: no descriptor is touched. */
    tx_setup(f, 8);
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    wr(f, E1K_TDLEN, 100);
    wr(f, E1K_TDT, f->tdt);
    pump(f);
    wr(f, E1K_TDLEN, 0xffffff80u);
    wr(f, E1K_TDT, f->tdt);
    pump(f);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_bad_ring, 2);
    assert_int_equal(f->peer.nframes, 0);
    assert_false(tx_done(f, 0));
    /* The ring outside guest memory. */
    wr(f, E1K_TDLEN, 128);
    wr(f, E1K_TDBAL, (uint32_t)OUTSIDE);
    wr(f, E1K_TDT, 1);
    pump(f);
    /* TDT beyond the ring: head could never meet it. */
    wr(f, E1K_TDBAL, (uint32_t)TXR_GPA);
    wr(f, E1K_TDH, 0);
    wr(f, E1K_TDT, 9);
    pump(f);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_bad_ring, 4);
    assert_int_equal(f->peer.nframes, 0);

    /* A good setup works at once. */
    tx_setup(f, 8);
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 1);

    /* Buffer outside guest memory, length 0, length 16289, a buffer that
     * runs off the end of RAM, an unknown descriptor type: each packet is
     * dropped, its descriptor still reported done. */
    tx_legacy(f, OUTSIDE, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_legacy(f, TXB_GPA, 0, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_legacy(f, TXB_GPA, E1K_TXD_MAX_LEN + 1, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_legacy(f, MEM_GPA + MEM_SIZE - 30, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    {
        uint8_t *d = tx_desc(f);

        st64(d, TXB_GPA);
        st32(d + 8, 60 | 7u << 20 |
                        (uint32_t)(E1K_TXD_CMD_DEXT | E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS) << 24);
    }
    tx_go(f);
    assert_int_equal(f->peer.nframes, 1);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_bad_desc, 5);
    for (unsigned i = 1; i <= 5; i++)
        assert_true(tx_done(f, i));
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_go(f);
    assert_int_equal(f->peer.nframes, 2);

    /* A checksum context pointing past the packet. */
    tx_ctx(f, 0, 0, 0, 200, 210, 0, 0, E1K_TUCMD_TCP, 0, 0);
    tx_data(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS, E1K_TXD_POPTS_TXSM);
    tx_go(f);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_bad_ctx, 1);
    assert_int_equal(f->peer.nframes, 2);

    /* VLAN insertion is refused on an access port. */
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS | E1K_TXD_CMD_VLE);
    tx_go(f);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_vlan, 1);
    assert_int_equal(f->peer.nframes, 2);
}

/* The driver keeps handing descriptors that never end a packet, moving TDT
 * all the time: every turn of the loop does a bounded amount of work, the
 * packet is dropped once it exceeds what a packet may be, and the next
 * EOP ends it; packets after that go out. */
static void test_tx_tail_chases_head(void **state)
{
    struct fx *f = *state;
    struct vio_e1000_stats st;
    uint8_t *b = g(f, TXB_GPA);
    int turns;

    memcpy(b, p_mac, 6);
    memcpy(b + 6, e_mac, 6);
    tx_setup(f, 64);
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 63; i++)
            tx_legacy(f, TXB_GPA, 100, E1K_TXD_CMD_RS); /* no EOP, ever */
        wr(f, E1K_TDT, f->tdt);
        /* One turn of the loop at a time: each returns. */
        for (turns = 0; turns < 100 && vio_loop_run_once(&f->loop, 0) > 0; turns++)
            ;
        assert_true(turns < 100);
    }
    assert_int_equal(f->peer.count, 0);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.tx_too_big, 1);
    assert_int_equal(rd(f, E1K_TDH), f->tdt);
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS); /* ends the junk */
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_go(f);
    assert_int_equal(f->peer.count, 1);
    /* 1000 one-descriptor packets take more than one turn of the loop. */
    tx_setup(f, 1024);
    for (int i = 0; i < 1000; i++)
        tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    wr(f, E1K_TDT, f->tdt);
    assert_int_equal(vio_loop_run_once(&f->loop, 0), 1);
    assert_true(rd(f, E1K_TDH) > 0 && rd(f, E1K_TDH) < 1000);
    pump(f);
    assert_int_equal(rd(f, E1K_TDH), 1000);
    assert_int_equal(f->peer.count, 1 + 1000);
    /* A reset in the middle of a packet forgets it. */
    tx_setup(f, 8);
    tx_legacy(f, TXB_GPA, 30, 0);
    tx_go(f);
    wr(f, E1K_CTRL, E1K_CTRL_RST);
    tx_setup(f, 8);
    tx_legacy(f, TXB_GPA, 60, E1K_TXD_CMD_EOP | E1K_TXD_CMD_RS);
    tx_go(f);
    assert_int_equal(f->peer.count, 1002);
    assert_int_equal(f->peer.last_len, 60);
}

static void test_bad_rx_input(void **state)
{
    struct fx *f = *state;
    struct vio_e1000_stats st;

    /* RDLEN not a multiple of 128; RDT beyond the ring; ring outside RAM. */
    rx_setup(f, 8, 7, E1K_RCTL_EN);
    wr(f, E1K_RDLEN, 8 * 16 + 8);
    peer_send(f, e_mac, 100, 1);
    wr(f, E1K_RDLEN, 128);
    wr(f, E1K_RDT, 20);
    peer_send(f, e_mac, 100, 1);
    wr(f, E1K_RDT, 7);
    wr(f, E1K_RDBAL, (uint32_t)OUTSIDE);
    peer_send(f, e_mac, 100, 1);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.rx_bad_ring, 3);
    assert_int_equal(st.rx_frames, 0);
    /* A buffer outside guest memory: that descriptor comes back with an
     * error, the frame is lost, the next one lands in the next buffer. */
    rx_setup(f, 8, 7, E1K_RCTL_EN);
    st64(rxd(f, 0), OUTSIDE);
    peer_send(f, e_mac, 100, 1);
    assert_int_equal(rxd(f, 0)[12] & (E1K_RXD_STAT_DD | E1K_RXD_STAT_EOP),
                     E1K_RXD_STAT_DD | E1K_RXD_STAT_EOP);
    assert_int_equal(rxd(f, 0)[13], E1K_RXD_ERR_RXE);
    assert_int_equal(rxd(f, 0)[8] | rxd(f, 0)[9] << 8, 0);
    peer_send(f, e_mac, 100, 2);
    assert_int_equal(rxd(f, 1)[13], 0);
    assert_int_equal(rxd(f, 1)[8] | rxd(f, 1)[9] << 8, 104);
    vio_e1000_get_stats(f->e, &st);
    assert_int_equal(st.rx_bad_desc, 1);
    assert_int_equal(st.rx_frames, 1);
    /* A buffer straddling the end of RAM. */
    st64(rxd(f, 2), MEM_GPA + MEM_SIZE - 50);
    peer_send(f, e_mac, 100, 3);
    assert_int_equal(rxd(f, 2)[13], E1K_RXD_ERR_RXE);
    peer_send(f, e_mac, 100, 4);
    assert_int_equal(rxd(f, 3)[8] | rxd(f, 3)[9] << 8, 104);
}

/* ---- as a PCI function of a VM ---- */

static uint32_t cfg_rd(struct vio_vm *vm, unsigned slot, unsigned off, unsigned len)
{
    uint32_t a = 0x80000000u | slot << 11 | (off & 0xfc), v = 0;

    vio_bus_access(&vm->pio, 0xcf8, &a, 4, true);
    vio_bus_access(&vm->pio, 0xcfc + (off & 3), &v, len, false);
    return v;
}

static void cfg_wr(struct vio_vm *vm, unsigned slot, unsigned off, uint32_t v, unsigned len)
{
    uint32_t a = 0x80000000u | slot << 11 | (off & 0xfc);

    vio_bus_access(&vm->pio, 0xcf8, &a, 4, true);
    vio_bus_access(&vm->pio, 0xcfc + (off & 3), &v, len, true);
}

static void test_pci_function(void **state)
{
    struct fx *f = *state;
    struct vio_vm_opts vo = {.mem_size = 64 << 20, .ncpus = 1};
    struct vio_e1000_opts o = {.id = "pe0", .mac = {0x52, 0x54, 0, 0, 0, 9}};
    struct vio_vm vm;
    struct vio_pci *pci;
    struct vio_e1000 *e;
    uint32_t bar0, bar1, v = 0, io;
    unsigned slot = 1;

    if (access("/dev/kvm", R_OK | W_OK) != 0)
        fail_msg("/dev/kvm is missing or not accessible (%s): this test needs KVM; run it "
                 "as root on a host with /dev/kvm (see shared/PLATFORM.md)", strerror(errno));
    assert_int_equal(vio_vm_create(&vo, &vm), 0);
    assert_int_equal(vio_pci_create(&vm, &pci), 0);
    assert_int_equal(vio_e1000_create(&o, &vm, pci, f->sw, &e), 0);
    assert_int_equal(cfg_rd(&vm, slot, 0, 4), 0x100e8086);
    assert_int_equal(cfg_rd(&vm, slot, 0x08, 4) >> 8, 0x020000);
    assert_int_equal(cfg_rd(&vm, slot, 0x2c, 4), 0x001e8086);
    assert_int_equal(cfg_rd(&vm, slot, PCI_INTERRUPT_PIN, 1), 1);
    assert_int_equal(cfg_rd(&vm, slot, PCI_INTERRUPT_LINE, 1), vio_pci_intx_gsi(slot, 0));
    /* BAR sizes, as a BIOS or Linux probes them. */
    bar0 = cfg_rd(&vm, slot, PCI_BAR0, 4);
    bar1 = cfg_rd(&vm, slot, PCI_BAR0 + 4, 4);
    assert_int_equal(bar0 & 1, 0);
    assert_int_equal(bar1 & 1, 1);
    cfg_wr(&vm, slot, PCI_BAR0, 0xffffffff, 4);
    assert_int_equal(cfg_rd(&vm, slot, PCI_BAR0, 4), (uint32_t)~(VIO_E1000_MMIO_SIZE - 1));
    cfg_wr(&vm, slot, PCI_BAR0, bar0, 4);
    cfg_wr(&vm, slot, PCI_BAR0 + 4, 0xffffffff, 4);
    assert_int_equal(cfg_rd(&vm, slot, PCI_BAR0 + 4, 4), (uint32_t)~(VIO_E1000_IO_SIZE - 1) | 1);
    cfg_wr(&vm, slot, PCI_BAR0 + 4, bar1, 4);
    io = bar1 & ~3u;
    assert_true(io >= VIO_PCI_IO_START && io + VIO_E1000_IO_SIZE <= VIO_PCI_IO_END);
    /* Registers through BAR0 and through IOADDR/IODATA. */
    assert_true(vio_bus_access(&vm.mmio, bar0 + E1K_STATUS, &v, 4, false));
    assert_true(v & E1K_STATUS_LU);
    v = E1K_IMS;
    assert_true(vio_bus_access(&vm.pio, io, &v, 4, true));
    v = E1K_ICR_LSC;
    assert_true(vio_bus_access(&vm.pio, io + 4, &v, 4, true));
    v = 0;
    assert_true(vio_bus_access(&vm.mmio, bar0 + E1K_IMS, &v, 4, false));
    assert_int_equal(v, E1K_ICR_LSC);
    /* INTA: ICS raises it, an ICR read drops it; INTX_DISABLE masks it. */
    v = E1K_ICR_LSC;
    vio_bus_access(&vm.mmio, bar0 + E1K_ICS, &v, 4, true);
    assert_int_equal(pci->intx_asserted[vio_pci_intx_gsi(slot, 0) - 16], 1u << slot);
    cfg_wr(&vm, slot, PCI_COMMAND, cfg_rd(&vm, slot, PCI_COMMAND, 2) | PCI_COMMAND_INTX_DISABLE, 2);
    assert_int_equal(pci->intx_asserted[vio_pci_intx_gsi(slot, 0) - 16], 0);
    cfg_wr(&vm, slot, PCI_COMMAND, cfg_rd(&vm, slot, PCI_COMMAND, 2) & ~PCI_COMMAND_INTX_DISABLE,
           2);
    assert_int_equal(pci->intx_asserted[vio_pci_intx_gsi(slot, 0) - 16], 1u << slot);
    vio_bus_access(&vm.mmio, bar0 + E1K_ICR, &v, 4, false);
    assert_int_equal(pci->intx_asserted[vio_pci_intx_gsi(slot, 0) - 16], 0);
    /* An I/O BAR turned off with COMMAND.IO stops decoding: all-ones. */
    cfg_wr(&vm, slot, PCI_COMMAND, cfg_rd(&vm, slot, PCI_COMMAND, 2) & ~PCI_COMMAND_IO, 2);
    v = 0;
    vio_bus_access(&vm.pio, io, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    vio_e1000_destroy(e);
    vio_pci_destroy(pci);
    vio_vm_destroy(&vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eeprom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_and_phy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_legacy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_checksum_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_tso, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tx_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_tail_chases_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rx_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pci_function, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
