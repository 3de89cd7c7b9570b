/* The 82540EM model (see e1000.h): register file, EEPROM, PHY, interrupt
 * causes; the transmit path (descriptors to frames, with checksums and TCP
 * segmentation done here) and the receive path (frames to descriptors),
 * both on the switch thread; and the PCI function for vio run.
 *
 * One file because the build lists it alone; the sections follow the order
 * above. */
#include "emul/e1000.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "emul/e1000_regs.h"
#include "net/offload.h"

#define NREGS           (VIO_E1000_MMIO_SIZE / 4)
#define RING_MAX_BYTES  (65536u * 16) /* TDLEN/RDLEN are 20-bit fields */
#define TX_BUDGET       256           /* descriptors per turn of the switch loop */
#define TX_MAX_PKT_DESC 256           /* data descriptors in one packet */
#define TX_MAX_IOV      512
#define TX_MAX_BYTES    (65536u + 256) /* TSO: headers and 64 KiB of payload */
#define TX_MAX_HDR      240           /* TSO header bytes we segment behind */
#define RX_MAX_FRAME    16384         /* with RCTL.LPE, FCS included */
#define RX_STD_FRAME    1522          /* without it */
#define ETH_ZLEN        60
#define FCS_LEN         4

struct tx_ctx {
    bool valid;
    uint8_t ipcss, ipcso, tucss, tucso, tucmd, hdrlen;
    uint16_t ipcse, tucse, mss;
};

/* The packet being gathered from data descriptors: switch thread only. */
struct tx_pkt {
    unsigned gen;       /* e->tx_gen when it started: a reset discards it */
    unsigned ndesc;
    uint32_t len;
    unsigned niov;
    bool bad;           /* dropped at EOP (already counted) */
    bool have_first;    /* POPTS and TSE come from the first data descriptor */
    bool tse;
    uint8_t popts;
    unsigned nrs;
    uint64_t rs[TX_MAX_PKT_DESC + 1]; /* descriptors to mark done (RS set) */
    struct iovec iov[TX_MAX_IOV];
};

/* What a finished packet needs done, fixed under the lock at EOP. */
struct tx_work {
    bool tso, ixsm, txsm, legacy_ic;
    uint8_t cso, css; /* legacy checksum */
    struct tx_ctx ctx;
};

struct vio_e1000 {
    struct vio_net_port port;
    const struct vio_gmem *mem;
    struct vio_switch *sw;
    struct vio_loop *loop;
    vio_e1000_irq_fn irq;
    void *irq_opaque;

    pthread_mutex_t lock; /* everything below up to "switch thread only" */
    uint32_t regs[NREGS]; /* plain storage for registers without behaviour */
    uint32_t icr, ims;
    bool irq_level;
    uint16_t eeprom[E1K_EEPROM_WORDS];
    struct {
        uint32_t pins;  /* SK, CS, DI, FWE, REQ as last written */
        unsigned nbits; /* command bits clocked in since CS rose */
        uint32_t in;
        bool reading, ignoring, dout;
        unsigned addr, bit;
    } ee;
    uint16_t phy[32];
    unsigned tx_gen;
    struct tx_ctx ctx_csum, ctx_tso; /* the 8254x keeps one of each */
    struct vio_e1000_stats st;
    struct vio_ratelimit rl;
    uint32_t ioaddr; /* BAR1 IOADDR */

    /* Switch thread only. */
    struct tx_pkt txp;
    uint8_t *txbuf;  /* TX_MAX_BYTES: a packet made linear */
    uint8_t *segbuf; /* TX_MAX_HDR + 65536: one TSO segment */
    uint8_t *rxbuf;  /* RX_MAX_FRAME + ETH_ZLEN */
    struct vio_handler tx_h;
    int tx_efd;
    bool watching;

    struct vio_pci_dev pdev;
    bool on_pci;
};

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#define R(e, off) ((e)->regs[(off) / 4])

#define guest_err(e, ...)                                                                          \
    do {                                                                                           \
        if (vio_ratelimit_ok(&(e)->rl))                                                            \
            vio_warn(__VA_ARGS__);                                                                 \
    } while (0)

/* ---- small helpers ---- */

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* The Ethernet FCS of @len bytes. */
static uint32_t fcs(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

/* Number of descriptors of a ring of @len bytes at @base, 0 if unusable. */
static unsigned ring_size(uint64_t base, uint32_t len)
{
    if (len == 0 || len % 128 || len > RING_MAX_BYTES || base > UINT64_MAX - len)
        return 0;
    return len / 16;
}

/* Copy @len bytes between @buf and guest-physical @gpa, region by region.
 * Returns 0 or -EFAULT (the copy may then be partial). */
static int gmem_copy(const struct vio_gmem *m, uint64_t gpa, void *buf, size_t len,
                     bool to_guest)
{
    uint8_t *b = buf;

    while (len) {
        uint64_t got = len;
        uint8_t *p = vio_gmem_xlate(m, gpa, &got);

        if (!p)
            return -EFAULT;
        if (to_guest)
            memcpy(p, b, got);
        else
            memcpy(b, p, got);
        b += got;
        gpa += got;
        len -= got;
    }
    return 0;
}

static void stat_add(struct vio_e1000 *e, uint32_t off, uint32_t v)
{
    R(e, off) += v;
}

static void stat_add64(struct vio_e1000 *e, uint32_t lo, uint64_t v)
{
    uint64_t cur = R(e, lo) | (uint64_t)R(e, lo + 4) << 32;

    cur += v;
    R(e, lo) = (uint32_t)cur;
    R(e, lo + 4) = (uint32_t)(cur >> 32);
}

/* Size-bin counters PRC64..PRC1522 / PTC64..PTC1522 (six bins). */
static void stat_bin(struct vio_e1000 *e, uint32_t base, uint32_t len)
{
    static const uint32_t limits[] = {64, 127, 255, 511, 1023};
    unsigned i = 0;

    while (i < VIO_ARRAY_SIZE(limits) && len > limits[i])
        i++;
    stat_add(e, base + 4 * i, 1);
}

/* ---- interrupts ---- */

static void update_irq(struct vio_e1000 *e)
{
    bool level = (e->icr & e->ims) != 0;

    if (level != e->irq_level) {
        e->irq_level = level;
        if (e->irq)
            e->irq(e->irq_opaque, level);
    }
}

static void irq_raise(struct vio_e1000 *e, uint32_t causes)
{
    e->icr |= causes;
    update_irq(e);
}

/* ---- EEPROM ---- */

static void eeprom_init(struct vio_e1000 *e, const uint8_t *mac)
{
    uint16_t *w = e->eeprom, sum = 0;

    memset(w, 0, sizeof(e->eeprom));
    for (int i = 0; i < 3; i++)
        w[i] = (uint16_t)(mac[2 * i] | mac[2 * i + 1] << 8);
    w[0x0b] = 0x001e; /* subsystem ID */
    w[0x0c] = 0x8086; /* subsystem vendor */
    w[0x0d] = 0x100e; /* device ID */
    w[0x0e] = 0x8086; /* vendor */
    w[0x0f] = 0x0000; /* init control 2: no PAUSE advertised */
    for (int i = 0; i < E1K_EEPROM_CSUM_WORD; i++)
        sum = (uint16_t)(sum + w[i]);
    w[E1K_EEPROM_CSUM_WORD] = (uint16_t)(E1K_EEPROM_SUM - sum);
}

static void ee_idle(struct vio_e1000 *e)
{
    e->ee.nbits = 0;
    e->ee.in = 0;
    e->ee.reading = false;
    e->ee.ignoring = false;
    e->ee.dout = true; /* "ready", as a Microwire part shows when idle */
}

/* A write to EECD: a Microwire 93C46 behind the pins. Commands are a start
 * bit, two opcode bits and six address bits, clocked in on SK's rising
 * edge while CS is high; READ then shifts out 16 data bits per word (and
 * continues with the next word). Anything else is ignored: the EEPROM is
 * read-only. */
static void eecd_write(struct vio_e1000 *e, uint32_t val)
{
    uint32_t old = e->ee.pins;
    uint32_t pins = val & (E1K_EECD_SK | E1K_EECD_CS | E1K_EECD_DI | E1K_EECD_FWE | E1K_EECD_REQ);

    e->ee.pins = pins;
    if (!(pins & E1K_EECD_CS)) {
        ee_idle(e);
        return;
    }
    if (!(old & E1K_EECD_CS))
        ee_idle(e);
    if ((old & E1K_EECD_SK) || !(pins & E1K_EECD_SK))
        return; /* not a rising clock edge */
    if (e->ee.reading) {
        e->ee.dout = (e->eeprom[e->ee.addr] >> (15 - e->ee.bit)) & 1;
        if (++e->ee.bit == 16) {
            e->ee.bit = 0;
            e->ee.addr = (e->ee.addr + 1) % E1K_EEPROM_WORDS;
        }
        return;
    }
    if (e->ee.ignoring)
        return;
    if (e->ee.nbits == 0 && !(pins & E1K_EECD_DI))
        return; /* zeros before the start bit */
    e->ee.in = e->ee.in << 1 | !!(pins & E1K_EECD_DI);
    if (++e->ee.nbits < 3 + 6)
        return;
    if ((e->ee.in >> 6) == E1K_EE_OP_READ) {
        e->ee.reading = true;
        e->ee.addr = e->ee.in & 0x3f;
        e->ee.bit = 0;
        e->ee.dout = false; /* the dummy zero before the data */
    } else {
        e->ee.ignoring = true;
    }
}

static uint32_t eecd_read(struct vio_e1000 *e)
{
    uint32_t v = e->ee.pins | E1K_EECD_PRES;

    if (v & E1K_EECD_REQ)
        v |= E1K_EECD_GNT;
    if (e->ee.dout)
        v |= E1K_EECD_DO;
    return v;
}

static void eerd_write(struct vio_e1000 *e, uint32_t val)
{
    unsigned addr = (val >> E1K_EERD_ADDR_SHIFT) & 0xff;
    uint16_t data = addr < E1K_EEPROM_WORDS ? e->eeprom[addr] : 0xffff;

    if (!(val & E1K_EERD_START)) {
        R(e, E1K_EERD) = val & ~E1K_EERD_DONE;
        return;
    }
    R(e, E1K_EERD) = (uint32_t)data << E1K_EERD_DATA_SHIFT | addr << E1K_EERD_ADDR_SHIFT |
                     E1K_EERD_DONE;
}

/* ---- PHY (M88E1011 behind MDIC) ---- */

static void phy_reset(struct vio_e1000 *e)
{
    memset(e->phy, 0, sizeof(e->phy));
    e->phy[E1K_PHY_CTRL] = 0x1140; /* autonegotiation, full duplex, 1000 Mb/s */
    e->phy[E1K_PHY_ADV] = 0x01e1;
    e->phy[E1K_PHY_1000T_CTRL] = 0x0300;
    e->phy[E1K_PHY_SPEC_CTRL] = 0x0068;
    e->phy[E1K_PHY_EXT_SPEC_CTRL] = 0x0c60;
}

static bool link_up(struct vio_e1000 *e)
{
    return atomic_load(&e->port.link_up);
}

static uint16_t phy_read(struct vio_e1000 *e, unsigned reg)
{
    bool up = link_up(e);

    switch (reg) {
    case E1K_PHY_STATUS:
        /* 10/100 half and full, extended status, preamble suppression,
         * autonegotiation able; link and autonegotiation done with the
         * port's link (negotiation completes at once). */
        return 0x7949 | (up ? E1K_PHY_STATUS_LINK | E1K_PHY_STATUS_ANEG_DONE : 0);
    case E1K_PHY_ID1:
        return E1K_PHY_ID1_M88;
    case E1K_PHY_ID2:
        return E1K_PHY_ID2_M88E1011;
    case E1K_PHY_LPA:
        return up ? 0x41e1 : 0; /* acknowledged, 10/100 half and full */
    case E1K_PHY_EXP:
        return up ? 0x0001 : 0;
    case E1K_PHY_1000T_STATUS:
        return up ? 0x3c00 : 0; /* receivers OK, partner 1000 half and full */
    case E1K_PHY_EXT_STATUS:
        return 0x3000;
    case E1K_PHY_SPEC_STATUS:
        return up ? 0xac00 : 0; /* 1000 Mb/s, full duplex, resolved, link */
    case E1K_PHY_INT_STATUS:
        return 0;
    default:
        return e->phy[reg];
    }
}

static void phy_write(struct vio_e1000 *e, unsigned reg, uint16_t v)
{
    switch (reg) {
    case E1K_PHY_CTRL:
        if (v & E1K_PHY_CTRL_RESET) {
            phy_reset(e);
            return;
        }
        e->phy[reg] = v & ~(E1K_PHY_CTRL_RESET | E1K_PHY_CTRL_RESTART);
        return;
    case E1K_PHY_STATUS:
    case E1K_PHY_ID1:
    case E1K_PHY_ID2:
    case E1K_PHY_LPA:
    case E1K_PHY_EXP:
    case E1K_PHY_1000T_STATUS:
    case E1K_PHY_EXT_STATUS:
    case E1K_PHY_SPEC_STATUS:
    case E1K_PHY_INT_STATUS:
        return; /* read-only */
    default:
        e->phy[reg] = v;
    }
}

static void mdic_write(struct vio_e1000 *e, uint32_t val)
{
    unsigned reg = (val >> E1K_MDIC_REG_SHIFT) & 31, phy = (val >> E1K_MDIC_PHY_SHIFT) & 31;
    uint32_t op = val & (3u << 26);
    uint32_t out = val & ~(E1K_MDIC_READY | E1K_MDIC_ERROR);

    if (phy != E1K_PHY_ADDR || (op != E1K_MDIC_OP_READ && op != E1K_MDIC_OP_WRITE)) {
        out |= E1K_MDIC_ERROR;
    } else if (op == E1K_MDIC_OP_READ) {
        out = (out & ~E1K_MDIC_DATA_MASK) | phy_read(e, reg);
    } else {
        phy_write(e, reg, (uint16_t)(val & E1K_MDIC_DATA_MASK));
    }
    R(e, E1K_MDIC) = out | E1K_MDIC_READY;
    if (val & E1K_MDIC_INT_EN)
        irq_raise(e, E1K_ICR_MDAC);
}

/* ---- reset ---- */

static void set_ra0(struct vio_e1000 *e)
{
    const uint16_t *w = e->eeprom;

    R(e, E1K_RA) = w[0] | (uint32_t)w[1] << 16;
    R(e, E1K_RA + 4) = w[2] | E1K_RAH_AV;
}

/* Back to the power-on state (CTRL.RST, device creation). Lock held. */
static void dev_reset(struct vio_e1000 *e)
{
    memset(e->regs, 0, sizeof(e->regs));
    R(e, E1K_CTRL) = E1K_CTRL_FD | E1K_CTRL_ASDE | E1K_CTRL_SLU | E1K_CTRL_SPD_1000;
    R(e, E1K_LEDCTL) = 0x07068302;
    R(e, E1K_PBA) = 0x00100030; /* 48 KB receive, 16 KB transmit */
    set_ra0(e);
    e->ee.pins = 0;
    ee_idle(e);
    phy_reset(e);
    memset(&e->ctx_csum, 0, sizeof(e->ctx_csum));
    memset(&e->ctx_tso, 0, sizeof(e->ctx_tso));
    e->tx_gen++;
    e->icr = 0;
    e->ims = 0;
    update_irq(e);
}

/* ---- transmit ---- */

static void tx_pkt_clear(struct tx_pkt *t, unsigned gen)
{
    t->gen = gen;
    t->ndesc = 0;
    t->len = 0;
    t->niov = 0;
    t->bad = false;
    t->have_first = false;
    t->tse = false;
    t->popts = 0;
    t->nrs = 0;
}

static void tx_kick(struct vio_e1000 *e)
{
    vio_eventfd_signal(e->tx_efd);
}

/* Append a data buffer to the packet. Lock held. */
static void tx_add_data(struct vio_e1000 *e, uint64_t addr, uint32_t len)
{
    struct tx_pkt *t = &e->txp;

    if (t->bad)
        return;
    if (len == 0 || len > E1K_TXD_MAX_LEN) {
        e->st.tx_bad_desc++;
        guest_err(e, "e1000 %s: transmit descriptor of %u bytes (1..%u): packet dropped",
                  e->port.id, len, E1K_TXD_MAX_LEN);
        t->bad = true;
        return;
    }
    if (++t->ndesc > TX_MAX_PKT_DESC || t->len + len > TX_MAX_BYTES) {
        e->st.tx_too_big++;
        guest_err(e, "e1000 %s: transmit packet over %u descriptors or %u bytes: dropped",
                  e->port.id, TX_MAX_PKT_DESC, TX_MAX_BYTES);
        t->bad = true;
        return;
    }
    while (len) {
        uint64_t got = len;
        void *p = vio_gmem_xlate(e->mem, addr, &got);

        if (!p || t->niov == TX_MAX_IOV) {
            e->st.tx_bad_desc++;
            guest_err(e, "e1000 %s: transmit buffer 0x%llx+%u is not in guest memory: "
                      "packet dropped", e->port.id, (unsigned long long)addr, len);
            t->bad = true;
            return;
        }
        t->iov[t->niov++] = (struct iovec){p, got};
        t->len += (uint32_t)got;
        addr += got;
        len -= (uint32_t)got;
    }
}

static int tx_emit(struct vio_e1000 *e, const void *data, uint32_t len)
{
    struct iovec iov = {(void *)data, len};
    struct vio_pkt p = {.iov = &iov, .iovcnt = 1, .len = len};

    vio_switch_input(&e->port, &p);
    return 1;
}

/* Checksum of [start, end] (end inclusive; 0: to the end of the frame)
 * stored at @at, as the 8254x inserts it. */
static bool insert_csum(uint8_t *buf, uint32_t len, unsigned start, unsigned end, unsigned at,
                        uint32_t add)
{
    uint32_t stop = end ? (uint32_t)end + 1 : len;

    if (start >= len || stop > len || stop <= start || (uint32_t)at + 2 > len)
        return false;
    put_be16(buf + at, vio_csum_fold(vio_csum_partial(buf + start, stop - start, add)));
    return true;
}

/* TCP (or UDP) segmentation of the linear packet in e->txbuf. The driver
 * prepared the headers as for the 8254x: IPv4 checksum zero, L4 checksum
 * holding the pseudo-header sum without a length. Each segment gets its IP
 * length (and IPv4 ID), TCP sequence number and flags, and checksums.
 * Returns the segments emitted, or -EINVAL (nothing emitted). */
static int tx_tso(struct vio_e1000 *e, uint32_t len, const struct tx_work *w)
{
    const struct tx_ctx *c = &w->ctx;
    const uint8_t *pkt = e->txbuf;
    uint8_t *seg = e->segbuf;
    bool v4 = c->tucmd & E1K_TUCMD_IP, tcp = c->tucmd & E1K_TUCMD_TCP;
    unsigned hdr = c->hdrlen, l3 = c->ipcss, l4 = c->tucss;
    uint32_t seq = 0, payload, off;
    uint16_t id = 0;
    int n = 0;

    if (!c->valid || hdr > TX_MAX_HDR || hdr >= len || c->mss == 0 ||
        l3 + (v4 ? 20u : 40u) > hdr || l4 + (tcp ? 20u : 8u) > hdr || l4 < l3 ||
        (w->txsm && (unsigned)c->tucso + 2 > hdr) || (w->ixsm && (!v4 || c->ipcso + 2u > hdr)))
        return -EINVAL;
    if (tcp)
        seq = (uint32_t)be16(pkt + l4 + 4) << 16 | be16(pkt + l4 + 6);
    if (v4)
        id = be16(pkt + l3 + 4);
    payload = len - hdr;
    for (off = 0; off < payload; off += c->mss, n++) {
        uint32_t chunk = VIO_MIN((uint32_t)c->mss, payload - off), slen = hdr + chunk;
        bool last = off + chunk == payload;

        memcpy(seg, pkt, hdr);
        memcpy(seg + hdr, pkt + hdr + off, chunk);
        if (v4) {
            put_be16(seg + l3 + 2, (uint16_t)(slen - l3));
            put_be16(seg + l3 + 4, (uint16_t)(id + n));
        } else {
            put_be16(seg + l3 + 4, (uint16_t)(slen - l3 - 40));
        }
        if (tcp) {
            put_be32(seg + l4 + 4, seq + off);
            if (!last)
                seg[l4 + 13] &= (uint8_t)~0x09; /* FIN, PSH only on the last */
            if (n > 0)
                seg[l4 + 13] &= (uint8_t)~0x80; /* CWR only on the first */
        } else {
            put_be16(seg + l4 + 4, (uint16_t)(slen - l4));
        }
        if (w->ixsm) {
            put_be16(seg + c->ipcso, 0);
            insert_csum(seg, slen, l3, c->ipcse ? c->ipcse : l4 - 1, c->ipcso, 0);
        }
        if (w->txsm)
            insert_csum(seg, slen, l4, 0, c->tucso, slen - l4); /* adds the L4 length */
        tx_emit(e, seg, slen);
    }
    return n;
}

/* Hand the finished packet to the switch (switch thread, lock NOT held).
 * Returns the frames emitted, or -EINVAL for an offload that does not fit. */
static int tx_send(struct vio_e1000 *e, const struct tx_work *w)
{
    struct tx_pkt *t = &e->txp;
    struct vio_pkt p = {.iov = t->iov, .iovcnt = t->niov, .len = t->len};
    uint32_t len = t->len;

    if (!w->tso && !w->ixsm && !w->txsm && !w->legacy_ic) {
        vio_switch_input(&e->port, &p); /* straight from guest memory */
        return 1;
    }
    vio_pkt_read(&p, 0, e->txbuf, len);
    if (w->tso)
        return tx_tso(e, len, w);
    if (w->ixsm) {
        if (!w->ctx.valid || (uint32_t)w->ctx.ipcso + 2 > len)
            return -EINVAL;
        put_be16(e->txbuf + w->ctx.ipcso, 0);
        if (!insert_csum(e->txbuf, len, w->ctx.ipcss, w->ctx.ipcse, w->ctx.ipcso, 0))
            return -EINVAL;
    }
    if (w->txsm && (!w->ctx.valid ||
                    !insert_csum(e->txbuf, len, w->ctx.tucss, w->ctx.tucse, w->ctx.tucso, 0)))
        return -EINVAL;
    if (w->legacy_ic && !insert_csum(e->txbuf, len, w->css, 0, w->cso, 0))
        return -EINVAL;
    return tx_emit(e, e->txbuf, len);
}

/* Mark the packet's RS descriptors done. Lock held. */
static bool tx_writeback(struct vio_e1000 *e)
{
    struct tx_pkt *t = &e->txp;

    for (unsigned i = 0; i < t->nrs; i++) {
        uint8_t *d = vio_gmem_map(e->mem, t->rs[i], 16);

        /* The frame is out before DD says so: pairs with the driver's read
         * barrier between DD and reusing the buffer. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        if (d)
            d[12] = (uint8_t)((d[12] & 0xf0) | E1K_TXD_STAT_DD);
    }
    return t->nrs > 0;
}

/* The packet ended (EOP): send it and report its descriptors. Called and
 * returns with the lock held; drops it around the send. Returns false if
 * the transmit unit was reset meanwhile. */
static bool tx_finish(struct vio_e1000 *e, const uint8_t *eop)
{
    struct tx_pkt *t = &e->txp;
    struct tx_work w = {0};
    unsigned gen = e->tx_gen;
    bool legacy = !(eop[11] & E1K_TXD_CMD_DEXT);
    int n = 0;

    if (!t->bad && (eop[11] & E1K_TXD_CMD_VLE)) {
        /* The switch port is an access port: a tag would be dropped there
         * anyway, and leaving it out would leak the frame into VLAN 0. */
        e->st.tx_vlan++;
        guest_err(e, "e1000 %s: VLAN tag insertion on an access port: packet dropped",
                  e->port.id);
        t->bad = true;
    }
    if (!t->bad && t->len == 0) {
        e->st.tx_bad_desc++;
        t->bad = true;
    }
    if (!t->bad) {
        if (legacy) {
            w.legacy_ic = eop[11] & E1K_TXD_CMD_IC;
            w.cso = eop[10];
            w.css = eop[13];
        } else {
            w.tso = t->tse;
            w.ixsm = t->popts & E1K_TXD_POPTS_IXSM;
            w.txsm = t->popts & E1K_TXD_POPTS_TXSM;
            w.ctx = w.tso ? e->ctx_tso : e->ctx_csum;
        }
        pthread_mutex_unlock(&e->lock);
        n = tx_send(e, &w);
        pthread_mutex_lock(&e->lock);
        if (gen != e->tx_gen)
            return false;
        if (n < 0) {
            e->st.tx_bad_ctx++;
            if (w.tso)
                stat_add(e, E1K_TSCTFC, 1);
            guest_err(e, "e1000 %s: checksum/TSO context does not fit a %u-byte packet: "
                      "dropped", e->port.id, t->len);
        } else {
            e->st.tx_frames += (unsigned)n;
            if (w.tso) {
                e->st.tx_tso++;
                stat_add(e, E1K_TSCTC, 1);
            }
            stat_add(e, E1K_GPTC, (uint32_t)n);
            stat_add(e, E1K_TPT, (uint32_t)n);
            stat_add64(e, E1K_GOTCL, t->len);
            stat_add64(e, E1K_TOTL, t->len);
            stat_bin(e, E1K_PTC64, t->len);
        }
    }
    if (tx_writeback(e))
        e->icr |= E1K_ICR_TXDW;
    tx_pkt_clear(t, e->tx_gen);
    return true;
}

static void tx_context(struct vio_e1000 *e, const uint8_t *d)
{
    struct tx_ctx c = {
        .valid = true,
        .ipcss = d[0],
        .ipcso = d[1],
        .ipcse = ld16(d + 2),
        .tucss = d[4],
        .tucso = d[5],
        .tucse = ld16(d + 6),
        .tucmd = d[11],
        .hdrlen = d[13],
        .mss = ld16(d + 14),
    };

    if (c.tucmd & E1K_TXD_CMD_TSE)
        e->ctx_tso = c;
    else
        e->ctx_csum = c;
}

/* Process descriptors from TDH to TDT, at most TX_BUDGET of them (the
 * rest is another turn of the loop, so a guest that keeps moving TDT
 * cannot hold the switch thread). Switch thread. */
static void tx_run(struct vio_e1000 *e)
{
    struct tx_pkt *t = &e->txp;
    unsigned done = 0;
    bool more = false, progress = false;

    vio_switch_batch_begin(e->sw);
    pthread_mutex_lock(&e->lock);
    if (t->gen != e->tx_gen)
        tx_pkt_clear(t, e->tx_gen);
    while (R(e, E1K_TCTL) & E1K_TCTL_EN) {
        uint64_t base = R(e, E1K_TDBAL) | (uint64_t)R(e, E1K_TDBAH) << 32, daddr;
        unsigned n = ring_size(base, R(e, E1K_TDLEN));
        uint32_t head = R(e, E1K_TDH), tail = R(e, E1K_TDT);
        uint8_t d[16], *p;

        if (!n || head >= n || tail >= n) {
            e->st.tx_bad_ring++;
            guest_err(e, "e1000 %s: transmit ring unusable (TDBA 0x%llx TDLEN %u TDH %u "
                      "TDT %u): transmit stopped until the driver sets it up again",
                      e->port.id, (unsigned long long)base, R(e, E1K_TDLEN), head, tail);
            break;
        }
        if (head == tail)
            break;
        if (done == TX_BUDGET) {
            more = true;
            break;
        }
        daddr = base + 16ull * head;
        p = vio_gmem_map(e->mem, daddr, 16);
        if (!p) {
            e->st.tx_bad_ring++;
            guest_err(e, "e1000 %s: transmit descriptor at 0x%llx is not in guest memory",
                      e->port.id, (unsigned long long)daddr);
            break;
        }
        memcpy(d, p, 16); /* read once: the guest may change it meanwhile */
        R(e, E1K_TDH) = (head + 1) % n;
        done++;
        progress = true;
        if (t->gen != e->tx_gen)
            tx_pkt_clear(t, e->tx_gen);
        if (!(d[11] & E1K_TXD_CMD_DEXT)) {
            tx_add_data(e, ld64(d), ld16(d + 8));
        } else {
            unsigned dtyp = (ld32(d + 8) >> 20) & 0xf;

            if (dtyp == E1K_TXD_DTYP_CTX) {
                tx_context(e, d);
                if (d[11] & E1K_TXD_CMD_RS) {
                    __atomic_thread_fence(__ATOMIC_RELEASE);
                    p[12] = (uint8_t)((p[12] & 0xf0) | E1K_TXD_STAT_DD);
                    e->icr |= E1K_ICR_TXDW;
                }
                continue;
            }
            if (dtyp != E1K_TXD_DTYP_DATA) {
                e->st.tx_bad_desc++;
                t->bad = true;
            } else {
                if (!t->have_first) {
                    t->have_first = true;
                    t->tse = d[11] & E1K_TXD_CMD_TSE;
                    t->popts = d[13];
                }
                tx_add_data(e, ld64(d), ld32(d + 8) & 0xfffff);
            }
        }
        if ((d[11] & E1K_TXD_CMD_RS) && t->nrs < VIO_ARRAY_SIZE(t->rs))
            t->rs[t->nrs++] = daddr;
        if ((d[11] & E1K_TXD_CMD_EOP) && !tx_finish(e, d))
            break; /* reset while sending */
        if (t->nrs == VIO_ARRAY_SIZE(t->rs)) {
            /* Only a packet already dropped gets here: report what it used
             * so far rather than lose track. */
            tx_writeback(e);
            t->nrs = 0;
        }
    }
    if (progress && R(e, E1K_TDH) == R(e, E1K_TDT))
        e->icr |= E1K_ICR_TXQE;
    update_irq(e);
    pthread_mutex_unlock(&e->lock);
    vio_switch_batch_end(e->sw);
    if (more)
        tx_kick(e);
}

static void tx_handler(struct vio_handler *h, uint32_t events)
{
    struct vio_e1000 *e = vio_container_of(h, struct vio_e1000, tx_h);

    (void)events;
    vio_eventfd_drain(h->fd);
    tx_run(e);
}

/* ---- receive ---- */

static bool mta_match(struct vio_e1000 *e, const uint8_t *dst)
{
    unsigned mo = (R(e, E1K_RCTL) >> E1K_RCTL_MO_SHIFT) & 3;
    /* 12 bits of the address, starting at bit 36 - mo (bit 32 for mo 3). */
    static const unsigned shift[] = {4, 3, 2, 0};
    uint32_t v = ((uint32_t)dst[4] | (uint32_t)dst[5] << 8) >> shift[mo];
    unsigned h = v & 0xfff;

    return (R(e, E1K_MTA + 4 * (h >> 5)) >> (h & 31)) & 1;
}

static bool rx_accept(struct vio_e1000 *e, const uint8_t *dst)
{
    uint32_t rctl = R(e, E1K_RCTL);
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

    if (rctl & E1K_RCTL_UPE)
        return true;
    if (memcmp(dst, bcast, 6) == 0)
        return rctl & (E1K_RCTL_BAM | E1K_RCTL_MPE);
    if ((dst[0] & 1) && (rctl & E1K_RCTL_MPE))
        return true;
    for (unsigned i = 0; i < 16; i++) {
        uint32_t lo = R(e, E1K_RA + 8 * i), hi = R(e, E1K_RA + 8 * i + 4);
        uint8_t a[6] = {(uint8_t)lo, (uint8_t)(lo >> 8), (uint8_t)(lo >> 16),
                        (uint8_t)(lo >> 24), (uint8_t)hi, (uint8_t)(hi >> 8)};

        /* Address select 00: match the destination. */
        if ((hi & E1K_RAH_AV) && !(hi & (3u << 16)) && memcmp(a, dst, 6) == 0)
            return true;
    }
    return (dst[0] & 1) && mta_match(e, dst);
}

static unsigned rx_buf_size(uint32_t rctl)
{
    static const unsigned normal[] = {2048, 1024, 512, 256}, ext[] = {2048, 16384, 8192, 4096};
    unsigned b = (rctl >> E1K_RCTL_BSIZE_SHIFT) & 3;

    return (rctl & E1K_RCTL_BSEX) ? ext[b] : normal[b];
}

/* Switch thread: a frame for this port. */
static int rx_deliver(struct vio_net_port *port, const struct vio_pkt *pkt)
{
    struct vio_e1000 *e = port->opaque;
    uint8_t *f = e->rxbuf;
    uint32_t rctl, len, total, bsize, head, tail, avail, need, off = 0;
    uint64_t base;
    unsigned n, i;
    int ret = 0;

    pthread_mutex_lock(&e->lock);
    rctl = R(e, E1K_RCTL);
    if (!(rctl & E1K_RCTL_EN)) {
        /* Receiver off: like a virtio driver that posted no buffers yet,
         * so both models count it as rx_drop_full. */
        ret = -ENOBUFS;
        goto out;
    }
    if (pkt->len < VIO_ETH_HLEN || pkt->len > RX_MAX_FRAME) {
        e->st.rx_too_big++;
        stat_add(e, E1K_ROC, 1);
        ret = -EMSGSIZE;
        goto out;
    }
    len = (uint32_t)vio_pkt_read(pkt, 0, f, pkt->len);
    if (!rx_accept(e, f)) {
        e->st.rx_filtered++;
        goto out;
    }
    /* A wire pads short frames and carries the FCS; the driver expects
     * both (Linux's e1000 strips 4 bytes unless RCTL.SECRC). */
    if (len < ETH_ZLEN) {
        memset(f + len, 0, ETH_ZLEN - len);
        len = ETH_ZLEN;
    }
    total = len;
    if (!(rctl & E1K_RCTL_SECRC)) {
        uint32_t c = fcs(f, len);

        for (int k = 0; k < FCS_LEN; k++)
            f[total++] = (uint8_t)(c >> (8 * k));
    }
    if (len + FCS_LEN > ((rctl & E1K_RCTL_LPE) ? RX_MAX_FRAME : RX_STD_FRAME)) {
        e->st.rx_too_big++;
        stat_add(e, E1K_ROC, 1);
        ret = -EMSGSIZE;
        goto out;
    }
    base = R(e, E1K_RDBAL) | (uint64_t)R(e, E1K_RDBAH) << 32;
    n = ring_size(base, R(e, E1K_RDLEN));
    head = R(e, E1K_RDH);
    tail = R(e, E1K_RDT);
    if (!n || head >= n || tail >= n) {
        e->st.rx_bad_ring++;
        guest_err(e, "e1000 %s: receive ring unusable (RDBA 0x%llx RDLEN %u RDH %u RDT %u)",
                  e->port.id, (unsigned long long)base, R(e, E1K_RDLEN), head, tail);
        ret = -ENOBUFS;
        goto out;
    }
    bsize = rx_buf_size(rctl);
    need = (total + bsize - 1) / bsize;
    avail = (tail + n - head) % n;
    if (need > avail) {
        e->st.rx_no_buf++;
        stat_add(e, E1K_RNBC, 1);
        stat_add(e, E1K_MPC, 1);
        irq_raise(e, E1K_ICR_RXO);
        ret = -ENOBUFS;
        goto out;
    }
    /* Every descriptor first, so a frame is never left half written. */
    for (i = 0; i < need; i++) {
        uint64_t daddr = base + 16ull * ((head + i) % n);

        if (!vio_gmem_map(e->mem, daddr, 16)) {
            e->st.rx_bad_ring++;
            guest_err(e, "e1000 %s: receive descriptor at 0x%llx is not in guest memory",
                      e->port.id, (unsigned long long)daddr);
            ret = -ENOBUFS;
            goto out;
        }
    }
    for (i = 0; i < need; i++) {
        uint8_t *d = vio_gmem_map(e->mem, base + 16ull * ((head + i) % n), 16);
        uint32_t chunk = VIO_MIN(bsize, total - off);
        bool last = i + 1 == need, fault;

        fault = gmem_copy(e->mem, ld64(d), f + off, chunk, true) < 0;
        if (fault) {
            /* The descriptor goes back with an error; the frame is lost. */
            e->st.rx_bad_desc++;
            guest_err(e, "e1000 %s: receive buffer 0x%llx+%u is not in guest memory",
                      e->port.id, (unsigned long long)ld64(d), chunk);
            chunk = 0;
            last = true;
        }
        d[8] = (uint8_t)chunk;
        d[9] = (uint8_t)(chunk >> 8);
        d[10] = d[11] = 0;
        d[13] = fault ? E1K_RXD_ERR_RXE : 0;
        d[14] = d[15] = 0;
        /* Data and length before DD: pairs with the driver's read barrier
         * after it sees DD. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        d[12] = E1K_RXD_STAT_DD | E1K_RXD_STAT_IXSM | (last ? E1K_RXD_STAT_EOP : 0);
        off += chunk;
        if (last) {
            i++;
            break;
        }
    }
    R(e, E1K_RDH) = (head + i) % n;
    if (ret == 0 && off == total) {
        e->st.rx_frames++;
        stat_add(e, E1K_GPRC, 1);
        stat_add(e, E1K_TPR, 1);
        stat_add64(e, E1K_GORCL, total);
        stat_add64(e, E1K_TORL, total);
        stat_bin(e, E1K_PRC64, total);
        if (f[0] & 1)
            stat_add(e, f[0] == 0xff && memcmp(f, "\xff\xff\xff\xff\xff\xff", 6) == 0
                            ? E1K_BPRC : E1K_MPRC, 1);
    } else if (ret == 0) {
        ret = -EFAULT;
    }
    if (i) {
        uint32_t left = avail - i;

        e->icr |= E1K_ICR_RXT0;
        if (left <= n >> (((rctl >> E1K_RCTL_RDMTS_SHIFT) & 3) + 1))
            e->icr |= E1K_ICR_RXDMT0;
        update_irq(e);
    }
out:
    pthread_mutex_unlock(&e->lock);
    return ret;
}

static void port_stats(struct vio_net_port *port, json_t *o)
{
    struct vio_e1000 *e = port->opaque;
    struct vio_e1000_stats s;

    vio_e1000_get_stats(e, &s);
    json_object_set_new(o, "model", json_string("82540EM"));
#define J(f) json_object_set_new(o, #f, json_integer((json_int_t)s.f))
    J(tx_bad_ring);
    J(tx_bad_desc);
    J(tx_bad_ctx);
    J(tx_too_big);
    J(tx_vlan);
    J(tx_frames);
    J(tx_tso);
    J(rx_bad_ring);
    J(rx_bad_desc);
    J(rx_no_buf);
    J(rx_filtered);
    J(rx_too_big);
    J(rx_frames);
#undef J
}

static const struct vio_net_port_ops e1000_port_ops = {
    .kind = "e1000",
    .deliver = rx_deliver,
    .stats = port_stats,
};

/* ---- registers ---- */

uint32_t vio_e1000_reg_read(struct vio_e1000 *e, uint32_t off)
{
    uint32_t v;

    off &= ~3u;
    if (off >= VIO_E1000_MMIO_SIZE)
        return 0;
    pthread_mutex_lock(&e->lock);
    switch (off) {
    case E1K_STATUS:
        v = E1K_STATUS_FD | E1K_STATUS_SPEED_1000 | (link_up(e) ? E1K_STATUS_LU : 0);
        break;
    case E1K_EECD:
        v = eecd_read(e);
        break;
    case E1K_ICR:
        v = e->icr;
        e->icr = 0;
        update_irq(e);
        break;
    case E1K_ICS:
        v = e->icr;
        break;
    case E1K_IMS:
        v = e->ims;
        break;
    case E1K_IMC:
        v = 0;
        break;
    case E1K_GORCL:
    case E1K_GOTCL:
    case E1K_TORL:
    case E1K_TOTL:
        v = R(e, off); /* cleared with the high half */
        break;
    case E1K_GORCH:
    case E1K_GOTCH:
    case E1K_TORH:
    case E1K_TOTH:
        v = R(e, off);
        R(e, off) = 0;
        R(e, off - 4) = 0;
        break;
    default:
        v = R(e, off);
        if (off >= E1K_STATS && off < E1K_STATS_END)
            R(e, off) = 0;
        break;
    }
    pthread_mutex_unlock(&e->lock);
    return v;
}

void vio_e1000_reg_write(struct vio_e1000 *e, uint32_t off, uint32_t val)
{
    bool kick = false;

    off &= ~3u;
    if (off >= VIO_E1000_MMIO_SIZE)
        return;
    pthread_mutex_lock(&e->lock);
    switch (off) {
    case E1K_CTRL:
        if (val & E1K_CTRL_RST) {
            dev_reset(e);
            break;
        }
        if (val & E1K_CTRL_PHY_RST)
            phy_reset(e);
        R(e, off) = val;
        break;
    case E1K_STATUS:
        break;
    case E1K_EECD:
        eecd_write(e, val);
        break;
    case E1K_EERD:
        eerd_write(e, val);
        break;
    case E1K_MDIC:
        mdic_write(e, val);
        break;
    case E1K_ICR:
        e->icr &= ~val;
        update_irq(e);
        break;
    case E1K_ICS:
        irq_raise(e, val & E1K_ICR_MASK);
        break;
    case E1K_IMS:
        e->ims |= val & E1K_ICR_MASK;
        update_irq(e);
        break;
    case E1K_IMC:
        e->ims &= ~val;
        update_irq(e);
        break;
    case E1K_TCTL:
        if (!(val & E1K_TCTL_EN))
            e->tx_gen++; /* a packet half gathered is abandoned */
        R(e, off) = val;
        kick = val & E1K_TCTL_EN;
        break;
    case E1K_TDBAL:
    case E1K_RDBAL:
        R(e, off) = val & ~0xfu;
        if (off == E1K_TDBAL)
            e->tx_gen++;
        break;
    case E1K_TDBAH:
    case E1K_TDLEN:
        R(e, off) = val;
        e->tx_gen++;
        break;
    case E1K_TDH:
        R(e, off) = val & 0xffff;
        e->tx_gen++;
        break;
    case E1K_TDT:
        R(e, off) = val & 0xffff;
        kick = true;
        break;
    case E1K_RDH:
    case E1K_RDT:
        R(e, off) = val & 0xffff;
        break;
    default:
        if (off >= E1K_STATS && off < E1K_STATS_END)
            break; /* counters are read-only */
        R(e, off) = val;
        break;
    }
    pthread_mutex_unlock(&e->lock);
    if (kick)
        tx_kick(e);
}

struct vio_net_port *vio_e1000_port(struct vio_e1000 *e)
{
    return &e->port;
}

void vio_e1000_get_stats(struct vio_e1000 *e, struct vio_e1000_stats *s)
{
    pthread_mutex_lock(&e->lock);
    *s = e->st;
    pthread_mutex_unlock(&e->lock);
}

void vio_e1000_set_link(struct vio_e1000 *e, bool up)
{
    pthread_mutex_lock(&e->lock);
    if (atomic_exchange(&e->port.link_up, up) != up)
        irq_raise(e, E1K_ICR_LSC);
    pthread_mutex_unlock(&e->lock);
}

/* ---- life cycle ---- */

struct watch_call {
    struct vio_call call;
    struct vio_e1000 *e;
    bool add;
};

static void watch_fn(struct vio_call *c)
{
    struct watch_call *w = vio_container_of(c, struct watch_call, call);
    int ret = 0;

    if (w->add)
        ret = vio_loop_add(w->e->loop, &w->e->tx_h, w->e->tx_efd, EPOLLIN, tx_handler);
    else
        vio_loop_del(w->e->loop, &w->e->tx_h);
    vio_call_done(c, ret);
}

static int watch(struct vio_e1000 *e, bool add)
{
    struct watch_call w = {.call.fn = watch_fn, .e = e, .add = add};

    return vio_loop_call(e->loop, &w.call);
}

int vio_e1000_new(const struct vio_e1000_opts *o, const struct vio_gmem *mem,
                  struct vio_switch *sw, vio_e1000_irq_fn irq, void *irq_opaque,
                  struct vio_e1000 **out)
{
    struct vio_e1000 *e;
    int ret;

    if (!o->id || !*o->id || (o->mac[0] & 1) || o->vlan > 4094)
        return -EINVAL;
    pthread_once(&crc_once, crc_init);
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->mem = mem;
    e->sw = sw;
    e->loop = vio_switch_loop(sw);
    e->irq = irq;
    e->irq_opaque = irq_opaque;
    e->rl = (struct vio_ratelimit)VIO_RATELIMIT_INIT;
    e->tx_efd = -1;
    pthread_mutex_init(&e->lock, NULL);
    vio_net_port_init(&e->port, &e1000_port_ops, e, o->id, o->mac, o->vlan);
    eeprom_init(e, o->mac);
    dev_reset(e);
    e->txbuf = malloc(TX_MAX_BYTES);
    e->segbuf = malloc(TX_MAX_HDR + 65536);
    e->rxbuf = malloc(RX_MAX_FRAME + ETH_ZLEN);
    e->tx_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!e->txbuf || !e->segbuf || !e->rxbuf || e->tx_efd < 0) {
        ret = e->tx_efd < 0 ? -errno : -ENOMEM;
        goto fail;
    }
    ret = watch(e, true);
    if (ret < 0)
        goto fail;
    e->watching = true;
    ret = vio_switch_attach(sw, &e->port);
    if (ret < 0)
        goto fail;
    *out = e;
    return 0;

fail:
    vio_e1000_free(e);
    return ret;
}

/* No more frames in or out: the switch thread no longer touches @e. */
static void quiesce(struct vio_e1000 *e)
{
    vio_switch_detach(&e->port);
    if (e->watching)
        watch(e, false);
    e->watching = false;
}

void vio_e1000_free(struct vio_e1000 *e)
{
    if (!e)
        return;
    quiesce(e);
    if (e->tx_efd >= 0)
        close(e->tx_efd);
    free(e->txbuf);
    free(e->segbuf);
    free(e->rxbuf);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* ---- PCI function ---- */

static uint32_t get_bytes(uint32_t v, unsigned shift, unsigned len)
{
    return len >= 4 ? v : (v >> (8 * shift)) & ((1u << (8 * len)) - 1);
}

static void mmio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_e1000 *e = opaque;
    uint64_t v = vio_e1000_reg_read(e, (uint32_t)off);

    if (len == 8)
        v |= (uint64_t)vio_e1000_reg_read(e, (uint32_t)off + 4) << 32;
    else
        v = get_bytes((uint32_t)v, off & 3, len);
    memcpy(data, &v, len);
}

static void mmio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_e1000 *e = opaque;
    uint64_t v = 0;

    memcpy(&v, data, len);
    if (len == 8) {
        vio_e1000_reg_write(e, (uint32_t)off, (uint32_t)v);
        vio_e1000_reg_write(e, (uint32_t)off + 4, (uint32_t)(v >> 32));
    } else if (len == 4) {
        vio_e1000_reg_write(e, (uint32_t)off, (uint32_t)v);
    } else {
        /* Narrow writes merge into the stored value (drivers use 32 bits). */
        unsigned sh = 8 * (off & 3);
        uint32_t mask = ((1u << (8 * len)) - 1) << sh, cur;

        pthread_mutex_lock(&e->lock);
        cur = R(e, off & ~3ull);
        pthread_mutex_unlock(&e->lock);
        vio_e1000_reg_write(e, (uint32_t)off, (cur & ~mask) | ((uint32_t)v << sh & mask));
    }
}

static const struct vio_io_ops mmio_ops = {.read = mmio_read, .write = mmio_write};

/* BAR1: IOADDR selects a register, IODATA reads or writes it. */
static void io_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_e1000 *e = opaque;
    uint32_t v = 0;

    if (off < 4) {
        pthread_mutex_lock(&e->lock);
        v = e->ioaddr;
        pthread_mutex_unlock(&e->lock);
        v = get_bytes(v, off & 3, len);
    } else if (off == 4 && len == 4) {
        uint32_t a;

        pthread_mutex_lock(&e->lock);
        a = e->ioaddr;
        pthread_mutex_unlock(&e->lock);
        v = vio_e1000_reg_read(e, a & (VIO_E1000_MMIO_SIZE - 1));
    }
    memcpy(data, &v, VIO_MIN(len, 4u));
}

static void io_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_e1000 *e = opaque;
    uint32_t v = 0, a;

    memcpy(&v, data, VIO_MIN(len, 4u));
    if (off == 0 && len == 4) {
        pthread_mutex_lock(&e->lock);
        e->ioaddr = v & (VIO_E1000_MMIO_SIZE - 4);
        pthread_mutex_unlock(&e->lock);
    } else if (off == 4 && len == 4) {
        pthread_mutex_lock(&e->lock);
        a = e->ioaddr;
        pthread_mutex_unlock(&e->lock);
        vio_e1000_reg_write(e, a, v);
    }
}

static const struct vio_io_ops io_ops = {.read = io_read, .write = io_write};

static void pci_irq(void *opaque, bool level)
{
    struct vio_e1000 *e = opaque;

    if (e->on_pci)
        vio_pci_dev_set_intx(&e->pdev, level);
}

int vio_e1000_create(const struct vio_e1000_opts *o, struct vio_vm *vm, struct vio_pci *pci,
                     struct vio_switch *sw, struct vio_e1000 **out)
{
    struct vio_e1000 *e;
    int ret;

    ret = vio_e1000_new(o, &vm->gmem, sw, NULL, NULL, &e);
    if (ret < 0)
        return ret;
    /* Intel 82540EM, class 02/00/00 (Ethernet), subsystem 8086:001e. */
    ret = vio_pci_dev_init(pci, &e->pdev, o->id, 0x8086, 0x100e, 0x020000, 0x03, 0x8086, 0x001e,
                           NULL, e);
    if (ret < 0)
        goto fail;
    e->on_pci = true;
    if ((ret = vio_pci_dev_add_bar(&e->pdev, 0, VIO_E1000_MMIO_SIZE, &mmio_ops, e)) < 0 ||
        (ret = vio_pci_dev_add_io_bar(&e->pdev, 1, VIO_E1000_IO_SIZE, &io_ops, e)) < 0)
        goto fail;
    vio_pci_dev_enable_intx(&e->pdev);
    pthread_mutex_lock(&e->lock);
    e->irq = pci_irq;
    e->irq_opaque = e;
    pthread_mutex_unlock(&e->lock);
    *out = e;
    return 0;

fail:
    vio_e1000_destroy(e);
    return ret;
}

void vio_e1000_destroy(struct vio_e1000 *e)
{
    if (!e)
        return;
    /* The switch thread may raise INTx until it is done with us. */
    quiesce(e);
    if (e->on_pci)
        vio_pci_dev_remove(&e->pdev);
    e->on_pci = false;
    vio_e1000_free(e);
}
