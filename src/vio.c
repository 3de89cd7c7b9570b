/* vio: entry point. One binary, subcommands: run (KVM hypervisor), serve
 * (device server over vhost-user) and ctl (control client). */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "serve/serve.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vio COMMAND [ARGS]\n"
               "\n"
               "  run     boot a Linux guest under KVM (vio run --help)\n"
               "  serve   serve virtio devices over vhost-user (vio serve --help)\n"
               "  ctl     talk to a running vio over its control socket (vio ctl --help)\n"
               "  bench   drive a vhost-user device from this process and measure it\n"
               "  version print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return vio_serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return vio_run_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "ctl") == 0)
        return vio_ctl_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0)
        return vio_bench_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("vio %s\n", VIO_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "vio: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
