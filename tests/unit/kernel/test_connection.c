/* Connection files: ports as numbers and strings, defaults, and bad files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "connection.h"
#include "core/error.h"

static int parse(lp_conn *c, const char *s) { return lp_conn_parse(c, s, strlen(s)); }

Test(connection, ports_as_numbers)
{
    lp_conn c;
    cr_assert_eq(parse(&c, "{\"shell_port\": 5001, \"control_port\": 5002, \"stdin_port\": 5003,"
                           "\"iopub_port\": 5004, \"hb_port\": 5005, \"ip\": \"127.0.0.1\","
                           "\"key\": \"abc\", \"transport\": \"tcp\", \"signature_scheme\": \"hmac-sha256\"}"), 0);
    cr_assert_eq(c.ports[LP_CH_SHELL], 5001);
    cr_assert_eq(c.ports[LP_CH_HB], 5005);
    cr_assert_str_eq(c.key, "abc");
    char ep[64];
    lp_conn_endpoint(&c, LP_CH_IOPUB, ep, sizeof ep);
    cr_assert_str_eq(ep, "tcp://127.0.0.1:5004");
    lp_conn_clear(&c);
}

Test(connection, ports_as_strings_and_defaults)
{
    lp_conn c;
    cr_assert_eq(parse(&c, "{\"shell_port\": \"6001\", \"control_port\": \"6002\", \"stdin_port\": \"6003\","
                           "\"iopub_port\": \"6004\", \"hb_port\": \"6005\"}"), 0, "%s", lp_last_error());
    cr_assert_eq(c.ports[LP_CH_CONTROL], 6002);
    cr_assert_str_eq(c.transport, "tcp");
    cr_assert_str_eq(c.ip, "127.0.0.1");
    cr_assert_str_eq(c.scheme, "hmac-sha256");
    cr_assert_str_eq(c.key, ""); /* no key: unsigned */
    lp_conn_clear(&c);
}

Test(connection, ipc_endpoint)
{
    lp_conn c;
    cr_assert_eq(parse(&c, "{\"transport\": \"ipc\", \"ip\": \"/tmp/k\", \"shell_port\": 1, \"control_port\": 2,"
                           "\"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5}"), 0);
    char ep[64];
    lp_conn_endpoint(&c, LP_CH_STDIN, ep, sizeof ep);
    cr_assert_str_eq(ep, "ipc:///tmp/k-3");
    lp_conn_clear(&c);
}

static void expect_error(const char *json, const char *needle)
{
    lp_conn c;
    cr_assert_eq(parse(&c, json), -1, "accepted: %s", json);
    cr_assert(strstr(lp_last_error(), needle) != NULL, "error \"%s\" lacks \"%s\"", lp_last_error(), needle);
    cr_assert_null(c.key);
}

#define PORTS "\"shell_port\": 1, \"control_port\": 2, \"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5"

Test(connection, bad_files)
{
    expect_error("", "not valid JSON");
    expect_error("{\"shell_port\": 1", "not valid JSON");
    expect_error("[1, 2]", "JSON object");
    expect_error("{\"control_port\": 2, \"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5}", "shell_port");
    expect_error("{\"shell_port\": \"abc\", \"control_port\": 2, \"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5}",
                 "not a port number");
    expect_error("{\"shell_port\": 70000, \"control_port\": 2, \"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5}",
                 "out of range");
    expect_error("{\"shell_port\": 1.5, \"control_port\": 2, \"stdin_port\": 3, \"iopub_port\": 4, \"hb_port\": 5}",
                 "number or a string");
    expect_error("{" PORTS ", \"transport\": \"udp\"}", "unknown transport");
    expect_error("{" PORTS ", \"signature_scheme\": \"hmac-sha1\"}", "signature_scheme");
    expect_error("{" PORTS ", \"key\": 5}", "'key' must be a string");
    expect_error("{" PORTS ", \"ip\": [1]}", "'ip' must be a string");
}

Test(connection, curve_keys_are_noticed)
{
    lp_conn c;
    cr_assert_eq(parse(&c, "{" PORTS ", \"curve_publickey\": \"x\"}"), 0);
    cr_assert(c.has_curve);
    lp_conn_clear(&c);
}

Test(connection, missing_file_names_the_file)
{
    lp_conn c;
    cr_assert_eq(lp_conn_load(&c, "/nonexistent/kernel-1.json"), -1);
    cr_assert(strstr(lp_last_error(), "/nonexistent/kernel-1.json") != NULL);
    cr_assert(strstr(lp_last_error(), "No such file") != NULL);
    char path[] = "/tmp/loupe-conn-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("{not json", f);
    fclose(f);
    cr_assert_eq(lp_conn_load(&c, path), -1);
    cr_assert(strstr(lp_last_error(), path) != NULL);
    cr_assert(strstr(lp_last_error(), "not valid JSON") != NULL);
    remove(path);
}
