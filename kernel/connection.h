/* The connection file that a Jupyter client writes for a kernel: transport, address, five
 * ports, the signing key and scheme. Ports may be JSON numbers or strings. */
#ifndef LP_CONNECTION_H
#define LP_CONNECTION_H

#include <stddef.h>

enum { LP_CH_SHELL, LP_CH_CONTROL, LP_CH_STDIN, LP_CH_IOPUB, LP_CH_HB, LP_CH_COUNT };

typedef struct lp_conn {
    char transport[16];       /* "tcp" or "ipc" */
    char ip[256];
    int ports[LP_CH_COUNT];   /* indexed by LP_CH_* */
    char *key;                /* owned; "" means messages are not signed */
    char scheme[32];          /* "hmac-sha256", "hmac-sha512", "hmac-md5" */
    char kernel_name[128];
    int has_curve;            /* curve keys present: refused (not supported) */
} lp_conn;

extern const char *const lp_channel_names[LP_CH_COUNT]; /* "shell", "control", ... */

/* Parses connection JSON text. Returns 0, or -1 with lp_last_error() naming the problem.
 * On success the caller owns c->key (lp_conn_clear frees it). */
int lp_conn_parse(lp_conn *c, const char *json_text, size_t len);
/* Reads and parses a file; errors name the file. */
int lp_conn_load(lp_conn *c, const char *path);
void lp_conn_clear(lp_conn *c);
/* "tcp://127.0.0.1:5555" (or "ipc://ip-5555") for channel ch into out. */
void lp_conn_endpoint(const lp_conn *c, int ch, char *out, int cap);

#endif
