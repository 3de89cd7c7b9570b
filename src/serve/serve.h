/* Entry points of the vio subcommands. */
#ifndef VIO_SERVE_SERVE_H
#define VIO_SERVE_SERVE_H

#ifndef VIO_VERSION
#define VIO_VERSION "0.1.0"
#endif

/* `vio serve ...`: returns the process exit status. */
int vio_serve_main(int argc, char **argv);
/* `vio run ...`: returns the process exit status. */
int vio_run_main(int argc, char **argv);
/* `vio ctl ...`: returns the process exit status. */
int vio_ctl_main(int argc, char **argv);

#endif
