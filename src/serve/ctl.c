/* `vio ctl`: command-line client of the JSON-RPC control socket of vio serve
 * (and vio run). Prints the result as indented JSON. Exit status: 0 success,
 * 1 the server returned an error, 2 usage or connection problem. */
#include "serve/serve.h"

#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rpc.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vio ctl [-s SOCKET] COMMAND [ARGS]\n"
               "\n"
               "  list                 devices and their connection state (device.list)\n"
               "  stats [ID]           counters of all devices or one (device.stats)\n"
               "  info                 server program, version, pid (server.info)\n"
               "  ports                switch ports: MAC, VLAN, link, counters (net.ports)\n"
               "  port-add SPEC        add a network port, SPEC as for --net (net.port.add)\n"
               "  port-remove ID       remove a network port (net.port.remove)\n"
               "  link ID up|down      set a port's link state (net.port.link)\n"
               "  luns                 SCSI LUNs: backends and counters (scsi.luns)\n"
               "  lun-add SPEC         add a LUN, SPEC as for --lun (scsi.lun.add)\n"
               "  lun-remove HBA LUN [TARGET]\n"
               "                       remove a LUN (scsi.lun.remove)\n"
               "  help                 every method the server offers\n"
               "  METHOD [JSON|k=v...] call any method with params given as a JSON\n"
               "                       object or array, or as key=value pairs\n"
               "\n"
               "  -s, --ctl SOCKET     control socket (default: $VIO_CTL or /tmp/vio.sock)\n");
}

/* Turn the words after the method into params. */
static int build_params(int argc, char **argv, json_t **out)
{
    json_t *obj;

    *out = NULL;
    if (argc == 0)
        return 0;
    if (argc == 1 && (argv[0][0] == '{' || argv[0][0] == '[')) {
        json_error_t e;

        *out = json_loads(argv[0], 0, &e);
        if (!*out) {
            fprintf(stderr, "vio ctl: params are not JSON: %s\n", e.text);
            return -EINVAL;
        }
        return 0;
    }
    obj = json_object();
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        json_t *v;

        if (!eq || eq == argv[i]) {
            fprintf(stderr, "vio ctl: '%s' is not key=value\n", argv[i]);
            json_decref(obj);
            return -EINVAL;
        }
        *eq = '\0';
        /* Numbers, true/false/null and JSON values pass as JSON. */
        v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (!v)
            v = json_string(eq + 1);
        json_object_set_new(obj, argv[i], v);
    }
    *out = obj;
    return 0;
}

int vio_ctl_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"ctl", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = getenv("VIO_CTL");
    const char *method;
    json_t *params = NULL, *result = NULL, *error = NULL;
    int opt, ret;

    if (!path)
        path = "/tmp/vio.sock";
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+s:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    method = argv[optind++];
    if (strcmp(method, "list") == 0) {
        method = "device.list";
    } else if (strcmp(method, "info") == 0) {
        method = "server.info";
    } else if (strcmp(method, "ports") == 0) {
        method = "net.ports";
    } else if (strcmp(method, "port-add") == 0 || strcmp(method, "port-remove") == 0) {
        bool add = strcmp(method, "port-add") == 0;

        if (argc - optind != 1) {
            fprintf(stderr, "vio ctl: %s takes one argument: %s\n", method,
                    add ? "id=ID,socket=PATH,mac=MAC[,vlan=N][,queues=N]" : "the port id");
            return 2;
        }
        params = json_pack("{s:s}", add ? "spec" : "id", argv[optind++]);
        method = add ? "net.port.add" : "net.port.remove";
    } else if (strcmp(method, "link") == 0) {
        if (argc - optind != 2 ||
            (strcmp(argv[optind + 1], "up") != 0 && strcmp(argv[optind + 1], "down") != 0)) {
            fprintf(stderr, "vio ctl: usage: link ID up|down\n");
            return 2;
        }
        params = json_pack("{s:s, s:b}", "id", argv[optind], "up",
                           strcmp(argv[optind + 1], "up") == 0);
        optind += 2;
        method = "net.port.link";
    } else if (strcmp(method, "luns") == 0) {
        method = "scsi.luns";
    } else if (strcmp(method, "lun-add") == 0) {
        if (argc - optind != 1) {
            fprintf(stderr, "vio ctl: lun-add takes one argument: hba=ID,path=P[,target=N]"
                            "[,lun=N]...\n");
            return 2;
        }
        params = json_pack("{s:s}", "spec", argv[optind++]);
        method = "scsi.lun.add";
    } else if (strcmp(method, "lun-remove") == 0) {
        char *end;
        long lun, target = 0;

        if (argc - optind < 2 || argc - optind > 3) {
            fprintf(stderr, "vio ctl: usage: lun-remove HBA LUN [TARGET]\n");
            return 2;
        }
        lun = strtol(argv[optind + 1], &end, 10);
        if (*end || !argv[optind + 1][0] || lun < 0) {
            fprintf(stderr, "vio ctl: lun-remove: LUN '%s' is not a number\n", argv[optind + 1]);
            return 2;
        }
        if (argc - optind == 3) {
            target = strtol(argv[optind + 2], &end, 10);
            if (*end || !argv[optind + 2][0] || target < 0) {
                fprintf(stderr, "vio ctl: lun-remove: TARGET '%s' is not a number\n",
                        argv[optind + 2]);
                return 2;
            }
        }
        params = json_pack("{s:s, s:I, s:I}", "hba", argv[optind], "lun", (json_int_t)lun,
                           "target", (json_int_t)target);
        optind = argc;
        method = "scsi.lun.remove";
    } else if (strcmp(method, "stats") == 0) {
        method = "device.stats";
        if (optind < argc && !strchr(argv[optind], '=') && argv[optind][0] != '{') {
            params = json_pack("{s:s}", "id", argv[optind]);
            optind++;
        }
    }
    if (!params && build_params(argc - optind, argv + optind, &params) < 0)
        return 2;
    ret = vio_rpc_call(path, method, params, &result, &error);
    json_decref(params);
    if (ret == -EREMOTEIO) {
        json_t *msg = json_object_get(error, "message");

        fprintf(stderr, "vio ctl: %s: %s\n", method,
                json_is_string(msg) ? json_string_value(msg) : "error");
        json_decref(error);
        return 1;
    }
    if (ret < 0) {
        fprintf(stderr, "vio ctl: cannot talk to %s: %s%s\n", path, strerror(-ret),
                ret == -ENOENT || ret == -ECONNREFUSED ? " (is vio serve or vio run running with --ctl?)"
                                                       : "");
        return 2;
    }
    json_dumpf(result, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(result);
    return 0;
}
