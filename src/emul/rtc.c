/* CMOS RTC (see rtc.h). Time registers are computed from the host's UTC
 * clock on every read; writes to them are ignored (the guest's idea of
 * time follows the host), writes to other CMOS bytes are kept. */
#include "emul/rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RTC_PORT 0x70

#define REG_SEC     0x00
#define REG_MIN     0x02
#define REG_HOUR    0x04
#define REG_WDAY    0x06
#define REG_MDAY    0x07
#define REG_MONTH   0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32

#define B_24H 0x02
#define B_BIN 0x04
#define D_VRT 0x80

struct vio_rtc {
    struct vio_vm *vm;
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t cmos[128];
};

static uint8_t to_bcd(const struct vio_rtc *r, unsigned v)
{
    if (r->cmos[REG_B] & B_BIN)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t read_reg(struct vio_rtc *r, uint8_t reg)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    switch (reg) {
    case REG_SEC:
        return to_bcd(r, (unsigned)tm.tm_sec);
    case REG_MIN:
        return to_bcd(r, (unsigned)tm.tm_min);
    case REG_HOUR:
        return to_bcd(r, (unsigned)tm.tm_hour);
    case REG_WDAY:
        return to_bcd(r, (unsigned)tm.tm_wday + 1);
    case REG_MDAY:
        return to_bcd(r, (unsigned)tm.tm_mday);
    case REG_MONTH:
        return to_bcd(r, (unsigned)tm.tm_mon + 1);
    case REG_YEAR:
        return to_bcd(r, (unsigned)(tm.tm_year % 100));
    case REG_CENTURY:
        return to_bcd(r, (unsigned)(1900 + tm.tm_year) / 100);
    case REG_A:
        return r->cmos[REG_A] & 0x7f; /* never "update in progress" */
    case REG_C: {
        uint8_t v = r->cmos[REG_C];

        r->cmos[REG_C] = 0; /* read to clear */
        return v;
    }
    case REG_D:
        return D_VRT;
    default:
        return r->cmos[reg & 0x7f];
    }
}

static void rtc_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct vio_rtc *r = opaque;
    uint8_t v;

    pthread_mutex_lock(&r->lock);
    v = off == 0 ? r->index : read_reg(r, r->index);
    pthread_mutex_unlock(&r->lock);
    memset(data, v, len);
}

static void rtc_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct vio_rtc *r = opaque;
    uint8_t v = *(const uint8_t *)data;

    (void)len;
    pthread_mutex_lock(&r->lock);
    if (off == 0) {
        r->index = v & 0x7f; /* bit 7 is the NMI mask */
    } else if (r->index == REG_B) {
        r->cmos[REG_B] = (uint8_t)(v | B_24H) & (uint8_t)~0x70; /* no interrupt sources */
    } else if (r->index > REG_YEAR && r->index != REG_C && r->index != REG_D &&
               r->index != REG_CENTURY) {
        r->cmos[r->index] = v;
    }
    pthread_mutex_unlock(&r->lock);
}

static const struct vio_io_ops rtc_ops = {.read = rtc_read, .write = rtc_write};

int vio_rtc_create(struct vio_vm *vm, struct vio_rtc **out)
{
    struct vio_rtc *r = calloc(1, sizeof(*r));
    int ret;

    if (!r)
        return -ENOMEM;
    r->vm = vm;
    pthread_mutex_init(&r->lock, NULL);
    r->cmos[REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
    r->cmos[REG_B] = B_24H;
    ret = vio_bus_add(&vm->pio, RTC_PORT, 2, &rtc_ops, r, "rtc");
    if (ret < 0) {
        free(r);
        return ret;
    }
    *out = r;
    return 0;
}

void vio_rtc_destroy(struct vio_rtc *r)
{
    if (!r)
        return;
    vio_bus_remove(&r->vm->pio, RTC_PORT, r);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
