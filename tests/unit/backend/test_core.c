/* backend/core: errors, byte formatting, buffers, the interrupt flag. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/interrupt.h"

Test(core, error_message_is_formatted_and_per_call)
{
    cr_assert_eq(lp_set_error("bad %s %d", "shape", 3), -1);
    cr_assert_str_eq(lp_last_error(), "bad shape 3");
    cr_assert_eq(lp_last_error_code(), LP_ERR_INPUT, "lp_set_error means bad input");
    lp_clear_error();
    cr_assert_str_eq(lp_last_error(), "");
    cr_assert_eq(lp_last_error_code(), LP_ERR_NONE);
}

Test(core, error_codes_are_set_with_the_message_and_kept_by_a_prefix)
{
    cr_assert_eq(lp_set_error_code(LP_ERR_IO, "%s: cannot open", "a.txt"), -1);
    cr_assert_eq(lp_last_error_code(), LP_ERR_IO);
    cr_assert_str_eq(lp_error_code_name(LP_ERR_IO), "input/output error");
    lp_malloc((size_t)1 << 62, "a test");
    cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM);
    cr_assert_eq(lp_error_prefix("%s: ", "corpus.txt"), -1);
    cr_assert(strncmp(lp_last_error(), "corpus.txt: cannot allocate ", 28) == 0, "%s", lp_last_error());
    cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM, "a prefix keeps the code");
    lp_set_error("plain");
    cr_assert_eq(lp_last_error_code(), LP_ERR_INPUT, "a new message brings its own code");
    lp_set_error_code(LP_ERR_DEVICE, "%s", "");
    cr_assert_str_eq(lp_last_error(), "device error", "an error is never an empty message");
    cr_assert_eq(lp_last_error_code(), LP_ERR_DEVICE);
}

Test(core, bytes_are_formatted_with_binary_units)
{
    char b[32];
    cr_assert_str_eq(lp_format_bytes(512, b, sizeof b), "512 B");
    cr_assert_str_eq(lp_format_bytes(1536, b, sizeof b), "1.5 KiB");
    cr_assert_str_eq(lp_format_bytes((size_t)6 * 1024 * 1024 * 1024 + 200u * 1024 * 1024, b, sizeof b), "6.2 GiB");
}

Test(core, huge_allocation_fails_with_a_message)
{
    void *p = lp_malloc((size_t)1 << 62, "activations");
    cr_assert_null(p);
    cr_assert(strstr(lp_last_error(), "cannot allocate") != NULL, "%s", lp_last_error());
    cr_assert(strstr(lp_last_error(), "activations") != NULL);
    cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM);
    cr_assert_null(lp_calloc((size_t)1 << 40, (size_t)1 << 40, "grid"));
    cr_assert(strstr(lp_last_error(), "overflows") != NULL);
    cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM);
}

Test(core, buffer_grows_and_finishes)
{
    lp_buf b = LP_BUF_INIT;
    cr_assert_str_eq(lp_buf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        lp_buf_printf(&b, "%d,", i);
    cr_assert_eq(strncmp(lp_buf_str(&b), "0,1,2,", 6), 0);
    lp_buf_putc(&b, 'x');
    char *s = lp_buf_finish(&b);
    cr_assert_not_null(s);
    cr_assert_eq(s[strlen(s) - 1], 'x');
    cr_assert_null(b.data);
    free(s);
    s = lp_buf_finish(&b); /* empty buffer gives an empty string */
    cr_assert_str_eq(s, "");
    free(s);
}

Test(core, interrupt_flag_sets_error)
{
    lp_interrupt_clear();
    cr_assert_eq(lp_interrupt_check(), 0);
    lp_interrupt_request();
    cr_assert(lp_interrupted());
    cr_assert_eq(lp_interrupt_check(), -1);
    cr_assert_str_eq(lp_last_error(), "interrupted");
    cr_assert_eq(lp_last_error_code(), LP_ERR_INTERRUPTED);
    lp_interrupt_clear();
    cr_assert(!lp_interrupted());
}
