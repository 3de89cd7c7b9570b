/* vhost-user message reader and writer (see vu_msg.h). Reads ask for exactly
 * the bytes still missing from the current message, so fds attached to the
 * next message are never taken with this one. */
#include "vhost/vu_msg.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const request_names[VU_REQUEST_MAX] = {
    [VU_GET_FEATURES] = "GET_FEATURES",
    [VU_SET_FEATURES] = "SET_FEATURES",
    [VU_SET_OWNER] = "SET_OWNER",
    [VU_RESET_OWNER] = "RESET_OWNER",
    [VU_SET_MEM_TABLE] = "SET_MEM_TABLE",
    [VU_SET_LOG_BASE] = "SET_LOG_BASE",
    [VU_SET_LOG_FD] = "SET_LOG_FD",
    [VU_SET_VRING_NUM] = "SET_VRING_NUM",
    [VU_SET_VRING_ADDR] = "SET_VRING_ADDR",
    [VU_SET_VRING_BASE] = "SET_VRING_BASE",
    [VU_GET_VRING_BASE] = "GET_VRING_BASE",
    [VU_SET_VRING_KICK] = "SET_VRING_KICK",
    [VU_SET_VRING_CALL] = "SET_VRING_CALL",
    [VU_SET_VRING_ERR] = "SET_VRING_ERR",
    [VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
    [VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
    [VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
    [VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
    [VU_SEND_RARP] = "SEND_RARP",
    [VU_NET_SET_MTU] = "NET_SET_MTU",
    [VU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
    [VU_IOTLB_MSG] = "IOTLB_MSG",
    [VU_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
    [VU_GET_CONFIG] = "GET_CONFIG",
    [VU_SET_CONFIG] = "SET_CONFIG",
    [VU_CREATE_CRYPTO_SESSION] = "CREATE_CRYPTO_SESSION",
    [VU_CLOSE_CRYPTO_SESSION] = "CLOSE_CRYPTO_SESSION",
    [VU_POSTCOPY_ADVISE] = "POSTCOPY_ADVISE",
    [VU_POSTCOPY_LISTEN] = "POSTCOPY_LISTEN",
    [VU_POSTCOPY_END] = "POSTCOPY_END",
    [VU_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
    [VU_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
    [VU_GPU_SET_SOCKET] = "GPU_SET_SOCKET",
    [VU_RESET_DEVICE] = "RESET_DEVICE",
    [VU_VRING_KICK] = "VRING_KICK",
    [VU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
    [VU_ADD_MEM_REG] = "ADD_MEM_REG",
    [VU_REM_MEM_REG] = "REM_MEM_REG",
    [VU_SET_STATUS] = "SET_STATUS",
    [VU_GET_STATUS] = "GET_STATUS",
};

_Static_assert(offsetof(struct vu_msg, payload) == sizeof(struct vu_hdr),
               "payload follows the header with no padding");

const char *vu_request_name(uint32_t request)
{
    if (request < VU_REQUEST_MAX && request_names[request])
        return request_names[request];
    return "UNKNOWN";
}

void vu_reader_init(struct vu_reader *r)
{
    r->got = 0;
    r->msg.nfds = 0;
    r->msg.hdr.size = 0;
}

void vu_msg_close_fds(struct vu_msg *m)
{
    for (unsigned i = 0; i < m->nfds; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        m->fds[i] = -1;
    }
    m->nfds = 0;
}

/* Take the SCM_RIGHTS fds out of @mh into @m. Returns 0 or -EPROTO when
 * they do not fit (the extra ones are closed). */
static int take_fds(struct msghdr *mh, struct vu_msg *m)
{
    int ret = 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t n;
        int *fds;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        fds = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, &fds[i], sizeof(fd));
            if (m->nfds < VU_MAX_FDS) {
                m->fds[m->nfds++] = fd;
            } else {
                close(fd);
                ret = -EPROTO;
            }
        }
    }
    if (mh->msg_flags & MSG_CTRUNC)
        ret = -EPROTO;
    return ret;
}

int vu_msg_recv(int sock, struct vu_reader *r)
{
    const size_t hdr_size = sizeof(struct vu_hdr);
    int ret;

    for (;;) {
        size_t want = r->got < hdr_size ? hdr_size - r->got : hdr_size + r->msg.hdr.size - r->got;
        uint8_t *dst = r->got < hdr_size ? (uint8_t *)&r->msg.hdr + r->got
                                         : r->msg.payload.raw + (r->got - hdr_size);
        union {
            char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
            struct cmsghdr align;
        } cmsg;
        struct iovec iov = {.iov_base = dst, .iov_len = want};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = cmsg.buf,
            .msg_controllen = sizeof(cmsg.buf),
        };
        ssize_t n;

        if (want == 0)
            return 1;
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            ret = -errno;
            goto err;
        }
        ret = take_fds(&mh, &r->msg);
        if (ret < 0)
            goto err;
        if (n == 0) {
            /* EOF between messages is a close; inside one it is an error. */
            ret = r->got ? -EPIPE : -ECONNRESET;
            goto err;
        }
        r->got += (size_t)n;
        if (r->got == hdr_size) {
            if ((r->msg.hdr.flags & VU_FLAG_VERSION_MASK) != VU_VERSION) {
                ret = -EPROTO;
                goto err;
            }
            if (r->msg.hdr.size > VU_MAX_PAYLOAD) {
                ret = -EMSGSIZE;
                goto err;
            }
        }
        if (r->got >= hdr_size && r->got == hdr_size + r->msg.hdr.size)
            return 1;
    }

err:
    vu_msg_close_fds(&r->msg);
    return ret;
}

int vu_msg_send(int sock, const struct vu_msg *m, const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } cmsg;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(m->hdr) + m->hdr.size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (m->hdr.size > VU_MAX_PAYLOAD || nfds > VU_MAX_FDS)
        return -EINVAL;
    if (nfds) {
        struct cmsghdr *c;

        memset(&cmsg, 0, sizeof(cmsg));
        mh.msg_control = cmsg.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    while (iov.iov_len) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN after a partial send leaves a torn message: the
             * caller drops the connection either way. */
            return -errno;
        }
        iov.iov_base = (uint8_t *)iov.iov_base + n;
        iov.iov_len -= (size_t)n;
        /* The fds travel with the first bytes only. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
    }
    return 0;
}
