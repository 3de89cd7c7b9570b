/* Backend selection: picks the implementation named by the options. */
#include "backends/block/bdev.h"

#include <errno.h>

#include "core/log.h"

int vio_bdev_open(const struct vio_bdev_opts *o, struct vio_bdev **out)
{
    if (o->null)
        return vio_bdev_null_open(o, out);
    if (!o->path || !*o->path) {
        vio_err("block backend: no path given (use path=FILE or backend=null)");
        return -EINVAL;
    }
    return vio_bdev_file_open(o, out);
}
