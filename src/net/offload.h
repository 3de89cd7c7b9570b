/* Offload finishing: checksums and segmentation done in software for a
 * receiver that cannot take a frame as it is (net/net.h, struct
 * vio_net_offload). Guest-to-guest traffic between ports that both accept
 * offloads is never touched; only the receivers that lack a capability pay
 * for it, at the last moment.
 *
 * All functions treat the frame and its offload header as untrusted (they
 * come from a guest): any length, offset or type that does not fit the
 * frame is refused with -EINVAL and nothing is emitted. */
#ifndef VIO_NET_OFFLOAD_H
#define VIO_NET_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

/* Working memory for vio_net_fit(); one per switch thread. */
struct vio_net_scratch {
    uint8_t frame[VIO_NET_MAX_FRAME]; /* the linearized input */
    uint8_t seg[VIO_NET_MAX_FRAME];   /* the segment being emitted */
};

/* Check an offload header against its frame: hdr_len, csum_start and
 * csum_offset inside the frame, a known gso_type with a non-zero gso_size,
 * flags known. Returns 0 or -EINVAL. */
int vio_net_offload_check(const struct vio_pkt *pkt);

/* Hand @emit frames that a receiver with @caps (VIO_NET_CAP_*) accepts and
 * that together are @pkt: @pkt itself when it needs nothing the receiver
 * lacks; else its checksum completed; else its GSO super-frame cut into
 * segments (IPv4 id/length/checksum, TCP sequence numbers and flags, and
 * each segment's checksum fixed), each left with NEEDS_CSUM if @caps has
 * VIO_NET_CAP_CSUM, else complete. Stops at the first non-zero return of
 * @emit and returns it. Returns 0, or -EINVAL for a malformed frame or
 * offload header (nothing emitted). */
int vio_net_fit(const struct vio_pkt *pkt, unsigned caps, struct vio_net_scratch *scratch,
                int (*emit)(void *opaque, const struct vio_pkt *out), void *opaque);
/* What vio_net_fit() finishes: NEEDS_CSUM on any protocol; GSO_TCPV4,
 * GSO_TCPV6 (with or without ECN) and GSO_UDP_L4 over IPv4 or IPv6 without
 * extension headers; GSO_UDP (UFO) as IPv4 fragments of an IPv4 header
 * without options. It refuses with -EINVAL (nothing emitted) UFO over IPv6,
 * IPv6 extension headers, IPv4 fragments as GSO input, and a GSO frame
 * whose csum_start/csum_offset are not its TCP/UDP checksum field or whose
 * non-zero hdr_len ends before its real headers do. */

/* The 16-bit ones' complement sum of @len bytes at @data added to @sum
 * (not folded, not inverted); for building checksums. */
uint32_t vio_csum_partial(const void *data, size_t len, uint32_t sum);
/* Fold a partial sum to 16 bits and invert: the checksum to store. */
uint16_t vio_csum_fold(uint32_t sum);

#endif
