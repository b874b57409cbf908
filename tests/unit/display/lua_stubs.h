/* What the test stubs of lp_lua_publish recorded. */
#ifndef LP_TEST_LUA_STUBS_H
#define LP_TEST_LUA_STUBS_H

#include <jansson.h>

extern int t_published, t_last_update;
extern char t_last_id[64];
extern json_t *t_last_bundle; /* the last published bundle (owned by the stubs) */

#endif
