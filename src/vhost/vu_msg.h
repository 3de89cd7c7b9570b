/* vhost-user message I/O on a non-blocking Unix socket: an incremental
 * reader that assembles one message and its file descriptors across partial
 * reads (so a slow or hostile peer cannot block the thread), and a sender.
 * Used by the back-end (vio serve) and, later, the front-end (vio run). */
#ifndef VIO_VHOST_VU_MSG_H
#define VIO_VHOST_VU_MSG_H

#include <stddef.h>

#include "vhost/vu_proto.h"

struct vu_reader {
    size_t got; /* bytes of header + payload received so far */
    struct vu_msg msg;
};

void vu_reader_init(struct vu_reader *r);

/* Read what is available. Returns 1 when r->msg holds a whole message (the
 * caller owns its fds and calls vu_reader_init before the next read), 0 if
 * more bytes are needed, -ECONNRESET at end of stream between messages,
 * -EPIPE at end of stream inside a message, -EMSGSIZE for a
 * payload larger than VU_MAX_PAYLOAD, -EPROTO for a bad version or too many
 * or truncated fds, or another -errno. On error all received fds are
 * closed. */
int vu_msg_recv(int sock, struct vu_reader *r);

/* Send @m (header, hdr.size payload bytes, and @nfds fds). Returns 0 or
 * -errno; -EAGAIN if the peer's socket buffer is full. */
int vu_msg_send(int sock, const struct vu_msg *m, const int *fds, unsigned nfds);

/* Close the fds of @m that the handler did not take (set to -1 when
 * taken). */
void vu_msg_close_fds(struct vu_msg *m);

#endif
