/* vhost-user protocol definitions (QEMU docs/interop/vhost-user.rst): message
 * header, request numbers, protocol feature bits and payload layouts.
 * Native byte order, as the protocol specifies. */
#ifndef VIO_VHOST_VU_PROTO_H
#define VIO_VHOST_VU_PROTO_H

#include <stdint.h>

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_IOTLB_MSG = 22,
    VU_SET_VRING_ENDIAN = 23,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_CREATE_CRYPTO_SESSION = 26,
    VU_CLOSE_CRYPTO_SESSION = 27,
    VU_POSTCOPY_ADVISE = 28,
    VU_POSTCOPY_LISTEN = 29,
    VU_POSTCOPY_END = 30,
    VU_GET_INFLIGHT_FD = 31,
    VU_SET_INFLIGHT_FD = 32,
    VU_GPU_SET_SOCKET = 33,
    VU_RESET_DEVICE = 34,
    VU_VRING_KICK = 35,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_STATUS = 39,
    VU_GET_STATUS = 40,
    VU_REQUEST_MAX
};

/* Protocol feature bits. */
#define VU_PF_MQ                  0
#define VU_PF_LOG_SHMFD           1
#define VU_PF_RARP                2
#define VU_PF_REPLY_ACK           3
#define VU_PF_MTU                 4
#define VU_PF_BACKEND_REQ         5
#define VU_PF_CROSS_ENDIAN        6
#define VU_PF_CONFIG              9
#define VU_PF_INFLIGHT_SHMFD      12
#define VU_PF_RESET_DEVICE        13
#define VU_PF_INBAND_NOTIFICATIONS 14
#define VU_PF_CONFIGURE_MEM_SLOTS 15
#define VU_PF_STATUS              16

/* The virtio feature bit vhost-user borrows to announce protocol features. */
#define VU_F_PROTOCOL_FEATURES 30

#define VU_FLAG_VERSION_MASK 0x3u
#define VU_VERSION           0x1u
#define VU_FLAG_REPLY        (1u << 2)
#define VU_FLAG_NEED_REPLY   (1u << 3)

/* Bits of the u64 payload of SET_VRING_KICK/CALL/ERR. */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD     (1u << 8)

#define VU_MAX_FDS              8   /* fds per message */
#define VU_MEM_TABLE_MAX_REGIONS 8  /* regions in one SET_MEM_TABLE */
#define VU_MAX_CONFIG_SIZE      256
#define VU_MAX_PAYLOAD          4096

struct vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

struct vu_vring_state {
    uint32_t index;
    uint32_t num;
} __attribute__((packed));

struct vu_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
    uint64_t log;
} __attribute__((packed));

struct vu_mem_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
} __attribute__((packed));

struct vu_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vu_mem_region regions[VU_MEM_TABLE_MAX_REGIONS];
} __attribute__((packed));

struct vu_mem_single {
    uint64_t padding;
    struct vu_mem_region region;
} __attribute__((packed));

struct vu_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t data[VU_MAX_CONFIG_SIZE];
} __attribute__((packed));
#define VU_CONFIG_HDR_SIZE 12u

/* A whole message as received, with the fds that came with it. */
struct vu_msg {
    struct vu_hdr hdr;
    union {
        uint64_t u64;
        struct vu_vring_state state;
        struct vu_vring_addr addr;
        struct vu_mem_table mem;
        struct vu_mem_single mem_single;
        struct vu_config config;
        uint8_t raw[VU_MAX_PAYLOAD];
    } __attribute__((packed)) payload;
    int fds[VU_MAX_FDS];
    unsigned nfds;
};

/* Name of a request for logs ("SET_MEM_TABLE"), or "UNKNOWN". */
const char *vu_request_name(uint32_t request);

#endif
