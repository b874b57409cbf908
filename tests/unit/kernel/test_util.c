/* ISO 8601 dates, UUIDs, UTF-8 code-point offsets. */
#include <criterion/criterion.h>
#include <regex.h>
#include <string.h>

#include "util.h"

Test(util, iso_dates_are_utc_with_microseconds)
{
    char d[32];
    lp_iso_date(d, 0);
    cr_assert_str_eq(d, "1970-01-01T00:00:00.000000Z");
    lp_iso_date(d, 1795521600123456LL); /* 2026-11-24T12:00:00.123456Z */
    cr_assert_str_eq(d, "2026-11-24T12:00:00.123456Z");
    lp_iso_date(d, 5); /* zero-padded microseconds */
    cr_assert_str_eq(d, "1970-01-01T00:00:00.000005Z");
    lp_iso_date(d, -1);
    regex_t re;
    regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$", REG_EXTENDED);
    cr_assert_eq(regexec(&re, d, 0, NULL, 0), 0, "%s", d);
    regfree(&re);
}

Test(util, uuids_are_v4_and_fresh)
{
    char a[37], b[37];
    lp_uuid(a);
    lp_uuid(b);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
    cr_assert_str_neq(a, b);
}

Test(util, utf8_code_points)
{
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"; /* a é € 😀 z */
    size_t n = strlen(s);
    cr_assert_eq(lp_utf8_codepoints(s, n), 5);
    cr_assert_eq(lp_utf8_codepoints(s, 3), 2);
    cr_assert_eq(lp_utf8_offset(s, n, 0), 0);
    cr_assert_eq(lp_utf8_offset(s, n, 1), 1);
    cr_assert_eq(lp_utf8_offset(s, n, 2), 3);
    cr_assert_eq(lp_utf8_offset(s, n, 3), 6);
    cr_assert_eq(lp_utf8_offset(s, n, 4), 10);
    cr_assert_eq(lp_utf8_offset(s, n, 5), n);
    cr_assert_eq(lp_utf8_offset(s, n, 99), n); /* clamped */
}
