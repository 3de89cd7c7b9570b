/* Backend selection: picks the implementation named by the options (a URI
 * scheme picks a network backend, any other path is a file). */
#include "backends/block/bdev.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"

int vio_bdev_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    if (o->null)
        return vio_bdev_null_open(o, out);
    if (!o->path || !*o->path) {
        vio_err("block backend: no path given (use path=FILE or backend=null)");
        return -EINVAL;
    }
    if (strncmp(o->path, "nbd://", 6) == 0 || strncmp(o->path, "nbd+unix://", 11) == 0)
        return vio_bdev_nbd_open(o, out);
    if (strncmp(o->path, "iscsi://", 8) == 0)
        return vio_bdev_iscsi_open(o, out);
    /* Anything else that looks like a URI is a typo, not a file name. */
    if (strstr(o->path, "://")) {
        vio_err("%s: unknown URI scheme (expected nbd://, nbd+unix:// or iscsi://, or a file "
                "path)",
                o->path);
        return -EINVAL;
    }
    return vio_bdev_file_open(o, out);
}
