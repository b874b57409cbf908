/* loupe.tokenizer and the loupe.Tokenizer userdata (see lua_tokenizer.h). */
#include "lua_tokenizer.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "lua_api.h"

#define MT "loupe.Tokenizer"

typedef struct {
    lp_tokenizer *t;
} tok_ud;

lp_tokenizer *lp_lua_check_tokenizer(lua_State *L, int idx)
{
    tok_ud *u = luaL_checkudata(L, idx, MT);
    if (!u->t)
        luaL_error(L, "the tokenizer has been freed");
    return u->t;
}

void lp_lua_push_tokenizer(lua_State *L, lp_tokenizer *t)
{
    tok_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = t;
    luaL_setmetatable(L, MT);
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lp_tokenizer *t = lp_tokenizer_load(path);
    if (!t)
        return lp_lua_backend_error(L, NULL);
    lp_lua_push_tokenizer(L, t);
    return 1;
}

/* Encodes argument 2 with the options table at 3; leaves the ids in *ids (caller frees). */
static size_t encode_arg(lua_State *L, lp_tokenizer *t, int32_t **ids)
{
    size_t len, n;
    const char *text = luaL_checklstring(L, 2, &len);
    int special = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "special");
        special = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (lp_tokenizer_encode(t, text, len, special, ids, &n) < 0)
        lp_lua_backend_error(L, "encode");
    return n;
}

static int l_encode(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    int32_t *ids;
    size_t n = encode_arg(L, t, &ids);
    lua_createtable(L, n > 0x7FFFFFFF ? 0x7FFFFFFF : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(ids);
    return 1;
}

static int l_tokens(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    int32_t *ids;
    size_t n = encode_arg(L, t, &ids);
    lua_createtable(L, n > 0x7FFFFFFF ? 0x7FFFFFFF : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, lp_tokenizer_token(t, ids[i]));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(ids);
    return 1;
}

static int l_decode(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    int32_t one;
    int32_t *ids = &one;
    size_t n = 1;
    if (lua_isinteger(L, 2)) {
        lua_Integer v = lua_tointeger(L, 2);
        one = v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        n = (size_t)lua_rawlen(L, 2);
        ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0); /* freed by Lua, even on error */
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, 2, (lua_Integer)i + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok)
                return luaL_error(L, "decode: ids[%d] is not an integer", (int)i + 1);
            ids[i] = v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
        }
    }
    size_t len;
    char *s = lp_tokenizer_decode(t, ids, n, &len);
    if (!s)
        return lp_lua_backend_error(L, "decode");
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

static int l_token(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    const char *s = id < 0 || id > INT32_MAX ? NULL : lp_tokenizer_token(t, (int32_t)id);
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
    return 1;
}

static int l_lookup(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    int id = lp_tokenizer_lookup(t, luaL_checkstring(L, 2));
    if (id < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, id);
    return 1;
}

static void push_id(lua_State *L, int32_t id)
{
    if (id < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, id);
}

static int l_vocab_size(lua_State *L)
{
    lua_pushinteger(L, lp_tokenizer_vocab_size(lp_lua_check_tokenizer(L, 1)));
    return 1;
}

static int l_bos(lua_State *L)
{
    push_id(L, lp_tokenizer_bos(lp_lua_check_tokenizer(L, 1)));
    return 1;
}

static int l_eos(lua_State *L)
{
    push_id(L, lp_tokenizer_eos(lp_lua_check_tokenizer(L, 1)));
    return 1;
}

static int l_tostring(lua_State *L)
{
    lp_tokenizer *t = lp_lua_check_tokenizer(L, 1);
    lua_pushfstring(L, "Tokenizer(vocab_size=%d, bos=%d, eos=%d)", (int)lp_tokenizer_vocab_size(t),
                    (int)lp_tokenizer_bos(t), (int)lp_tokenizer_eos(t));
    return 1;
}

static int l_gc(lua_State *L)
{
    tok_ud *u = luaL_checkudata(L, 1, MT);
    lp_tokenizer_free(u->t);
    u->t = NULL;
    return 0;
}

void lp_lua_open_tokenizer(lua_State *L)
{
    int loupe = lua_gettop(L);
    if (luaL_newmetatable(L, MT)) {
        int mt = lua_gettop(L);
        lua_newtable(L);
        int m = lua_gettop(L);
        lp_lua_setfunc(L, m, "encode", l_encode,
                       "tok:encode(text [, {special = true}]) -> {ids}\n"
                       "Token ids of text (0-based, as the model numbers them). Added and special tokens in the\n"
                       "text are recognised; special = true also adds BOS / EOS as the model's config says.");
        lp_lua_setfunc(L, m, "decode", l_decode,
                       "tok:decode(ids) -> string\nThe text (bytes) of a table of ids, or of one id.");
        lp_lua_setfunc(L, m, "tokens", l_tokens,
                       "tok:tokens(text [, {special = true}]) -> {strings}\n"
                       "The display string of each token of text, e.g. {\"Hello\", \" world\"}.");
        lp_lua_setfunc(L, m, "token", l_token, "tok:token(id) -> string or nil\nThe display string of one token.");
        lp_lua_setfunc(L, m, "lookup", l_lookup,
                       "tok:lookup(str) -> id or nil\nThe id of a token given as text (\" the\") or as the vocab writes it.");
        lp_lua_setfunc(L, m, "vocab_size", l_vocab_size, "tok:vocab_size() -> integer\nThe number of ids.");
        lp_lua_setfunc(L, m, "bos", l_bos, "tok:bos() -> id or nil\nThe BOS token's id.");
        lp_lua_setfunc(L, m, "eos", l_eos, "tok:eos() -> id or nil\nThe EOS token's id.");
        lua_setfield(L, mt, "__index");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, mt, "__tostring");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, mt, "__gc");
        lp_lua_settype(L, mt,
                       "Tokenizer: a byte-level BPE tokenizer, from loupe.tokenizer(folder) or "
                       "loupe.tokenizer_train{...}.\nIds count from 0, as the model numbers them.",
                       NULL);
    }
    lua_pop(L, 1);
    lp_lua_setfunc(L, loupe, "tokenizer", l_load,
                   "loupe.tokenizer(folder) -> Tokenizer\n"
                   "Loads a byte-level BPE tokenizer from a Hugging Face folder: tokenizer.json, or vocab.json\n"
                   "and merges.txt (GPT-2), with tokenizer_config.json / config.json for BOS and EOS.");
}
