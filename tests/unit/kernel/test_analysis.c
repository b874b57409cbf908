/* The analysis methods from Lua, through the whole interpreter (lp_lua_open_all, displays,
 * interrupts): r:dla, m:composition, m:head_scores' prefix-matching score and m:patch_sweep,
 * on the tiny fixture models of tests/unit/model and a larger one for interrupts. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "fixtures.h"
#include "interp.h"

static int n_display, n_update;
static json_t *last_display;

static void w(void *ud, int which, const char *s, size_t n) { (void)ud, (void)which, (void)s, (void)n; }
static void d(void *ud, json_t *b, const char *id, int update)
{
    (void)ud, (void)id;
    n_display += !update;
    n_update += update;
    json_decref(last_display);
    last_display = b;
}
static void c(void *ud, int wait) { (void)ud, (void)wait; }
static int in(void *ud, const char *p, int pw, lp_buf *o) { (void)ud, (void)p, (void)pw, (void)o; return -1; }
static void cm(void *ud, const char *t, json_t *content) { (void)ud, (void)t; json_decref(content); }

static lp_interp *I;
static lp_exec_result R;
static char dir[64];

static void setup(void)
{
    lp_io io = {w, d, c, in, cm, NULL, NULL};
    I = lp_interp_new(&io, 512u << 20);
    n_display = n_update = 0;
    dir[0] = 0;
}

static void teardown(void)
{
    lp_exec_result_clear(&R);
    lp_interp_free(I);
    json_decref(last_display);
    last_display = NULL;
    if (dir[0])
        fx_remove(dir);
}

TestSuite(analysis_lua, .init = setup, .fini = teardown);

static const char *text_of(json_t *bundle) { return json_string_value(json_object_get(bundle, "text/plain")); }

static const char *run(const char *code)
{
    lp_exec_result_clear(&R);
    lp_interp_execute(I, code, 1, 1, &R);
    cr_assert(R.ok, "%s\nfailed: %s %s", code, R.ename, R.evalue ? R.evalue : "");
    return R.result ? text_of(R.result) : NULL;
}

static void fails(const char *code, const char *ename, const char *needle)
{
    lp_exec_result_clear(&R);
    lp_interp_execute(I, code, 1, 1, &R);
    cr_assert(!R.ok, "%s succeeded", code);
    cr_assert_str_eq(R.ename, ename, "%s: %s", code, R.evalue);
    cr_assert(strstr(R.evalue, needle), "%s: \"%s\" lacks \"%s\"", code, R.evalue, needle);
}

static void use(const fx_opts *o)
{
    fx_make(dir, o);
    char code[160];
    snprintf(code, sizeof code, "m = loupe.load('%s'); ids = {3, 1, 4, 1, 5, 9, 2}; other = {3, 1, 30, 1, 5, 9, 2}",
             dir);
    run(code);
}

Test(analysis_lua, dla_adds_up_and_displays)
{
    for (int llama = 0; llama < 2; llama++) {
        use(&(fx_opts){.llama = llama});
        run("r = m:run(ids)\n"
            "local d = r:dla{token = 5}\n"
            "assert(math.abs(d.total - d.logit) < 1e-3, d.total .. ' vs ' .. d.logit)\n"
            "assert(math.abs(d.logit - r.logits[1][7][6]) < 1e-6, 'the logit of id 5 at the last position')\n"
            "local s = d.bias for _, c in ipairs(d.components) do if c.name ~= 'bias' then s = s + c.value end end\n"
            "assert(math.abs(s - d.logit) < 1e-3, 'components + bias')\n"
            "local hs = d.heads:shape(); assert(hs[1] == m.n_layers and hs[2] == m.n_heads)\n"
            "for l = 1, m.n_layers do\n"
            "  assert(math.abs(d.heads[l]:sum() + d.attn_bias[l] - d.attn[l]) < 1e-4, 'heads + b_O')\n"
            "end\n"
            "local b = getmetatable(d).__display(d)\n"
            "assert(b['text/html']:find('data:image/svg+xml;base64,', 1, true))\n"
            "assert(tostring(d):find('Direct logit attribution'), tostring(d))\n"
            "local diff = r:dla{token = 5, baseline_token = 7, pos = 3}\n"
            "local want = r.logits[1][3][6] - r.logits[1][3][8]\n"
            "assert(math.abs(diff.logit - want) < 1e-6 and math.abs(diff.total - want) < 1e-3)\n"
            "assert(diff.baseline == 7 and diff.pos == 3)\n"
            "local b2 = m:run({ids, other}):dla{token = 2, row = 2, pos = -2}\n"
            "assert(math.abs(b2.total - b2.logit) < 1e-3)\n");
        fails("r:dla{}", "LuaError", "token = ");
        fails("r:dla{token = 'Paris'}", "LuaError", "no tokenizer");
        fails("r:dla{token = 99}", "LuaError", "not an id");
        fails("r:dla{token = 1, pos = 8}", "LuaError", "pos must be in 1..7");
        fails("m:run(ids, {cache = false}):dla{token = 1}", "LuaError", "did not cache");
        fx_remove(dir);
        dir[0] = 0;
    }
}

Test(analysis_lua, composition_tables)
{
    use(&(fx_opts){.llama = 1});
    run("local f = m:composition{kind = 'k'}\n"
        "local s = f.scores:shape(); assert(#s == 4 and s[1] == 2 and s[2] == 4 and s[3] == 2 and s[4] == 4)\n"
        "local p = m:composition{kind = 'K', layers = {0, 1}}\n"
        "for a = 1, 4 do for b = 1, 4 do\n"
        "  local v = f.scores[1][a][2][b]\n"
        "  assert(v > 0 and v <= 1, v)\n"
        "  assert(math.abs(v - p.scores[a][b]) < 1e-6, 'the pair is a block of the whole')\n"
        "  assert(f.scores[2][a][1][b] == 0 and f.scores[1][a][1][b] == 0, 'masked')\n"
        "end end\n"
        "assert(tostring(f):find('K%-composition'), tostring(f))\n"
        "assert(getmetatable(f).__display(f)['text/html']:find('data:image/svg+xml', 1, true))\n"
        "for _, k in ipairs{'q', 'v'} do local g = m:composition{kind = k, fold_ln = true}\n"
        "  assert(g.kind == k:upper()) end\n");
    fails("m:composition()", "LuaError", "kind must be");
    fails("m:composition{kind = 'x'}", "LuaError", "kind must be");
    fails("m:composition{kind = 'q', layers = {1, 1}}", "LuaError", "0 <= l1 < l2");
}

/* prefix_matching recomputed from the patterns of an ordinary run: from each position whose
 * token occurred before, the attention to every position right after an earlier occurrence. */
Test(analysis_lua, head_scores_prefix_matching)
{
    use(&(fx_opts){0});
    run("local S = 5\n"
        "local s = m:head_scores{seq_len = S, batch = 3, seed = 2}\n"
        "local r = m:run(s.tokens)\n"
        "local T = #s.tokens[1]\n"
        "local any_inner_repeat = false\n"
        "for l = 0, m.n_layers - 1 do\n"
        "  local p = r['blocks.' .. l .. '.attn.hook_pattern']\n"
        "  for h = 1, m.n_heads do\n"
        "    local sum, n = 0, 0\n"
        "    for b = 1, 3 do local tk = s.tokens[b]\n"
        "      for i = 2, T do\n"
        "        local got, a = false, 0\n"
        "        for j = 2, i do if tk[j - 1] == tk[i] then got = true; a = a + p[b][h][i][j] end end\n"
        "        if got then sum = sum + a; n = n + 1 end\n"
        "        if got and i <= T - S then any_inner_repeat = true end\n"
        "      end\n"
        "    end\n"
        "    assert(math.abs(sum / n - s.prefix_matching[l + 1][h]) < 1e-5, 'prefix matching ' .. l .. ' ' .. h)\n"
        "  end\n"
        "end\n"
        "assert(s.induction[1][1] and s.previous_token[1][1])\n"
        "assert(getmetatable(s).__display(s)['text/plain']:find('prefix'), 'three panels')\n");
}

Test(analysis_lua, patch_sweep_resid_pre)
{
    use(&(fx_opts){0});
    /* ids and other differ only at position 3 */
    run("metric = {token = 4, baseline = 7}\n"
        "local all = m:patch_sweep{clean = ids, corrupt = other, hook = 'resid_pre', positions = false, metric = metric}\n"
        "local v = all.values:shape(); assert(v[1] == 2 and v[2] == 1)\n"
        "assert(all.values[1][1] == 1, 'every position of layer 0 from the clean run: exactly clean, got ' .. all.values[1][1])\n"
        "assert(math.abs(all.raw[1][1] - all.clean) < 1e-6)\n"
        "local clean, corrupt = m:run(ids), m:run(other)\n"
        "assert(math.abs(all.clean - (clean.logits[1][7][5] - clean.logits[1][7][8])) < 1e-6)\n"
        "assert(math.abs(all.corrupt - (corrupt.logits[1][7][5] - corrupt.logits[1][7][8])) < 1e-6)\n"
        "local f = m:patch_sweep{clean = ids, corrupt = other, hook = 'resid_pre', metric = metric}\n"
        "local s = f.values:shape(); assert(s[1] == 2 and s[2] == 7)\n"
        "for p = 1, 7 do if p ~= 3 then\n"
        "  assert(f.values[1][p] == 0, 'same token: exactly the corrupt result at position ' .. p .. ': ' .. f.values[1][p])\n"
        "end end\n"
        "assert(math.abs(f.values[1][3] - 1) < 1e-5, 'layer 0: position 3 is the only difference')\n"
        "assert(f.labels[3]:find('#4', 1, true) and f.labels[1] == '#3', f.labels[3])\n"
        "assert(tostring(f):find('resid_pre'), tostring(f))\n"
        "assert(getmetatable(f).__display(f)['text/html']:find('data:image/svg+xml', 1, true))\n"
        "local post = m:patch_sweep{clean = ids, corrupt = other, hook = 'resid_post', metric = metric}\n"
        "assert(math.abs(post.values[2][7] - 1) < 1e-5, 'the last resid_post at the last position decides it')\n"
        "local raw = m:patch_sweep{clean = ids, corrupt = other, hook = 'mlp_out', metric = metric, normalize = false}\n"
        "assert(raw.values[1][1] == raw.raw[1][1])\n");
}

Test(analysis_lua, patch_sweep_heads_and_metric_functions)
{
    use(&(fx_opts){.llama = 1});
    run("calls = 0\n"
        "local fn = function(logits) calls = calls + 1; local s = logits:shape()\n"
        "  assert(s[1] == 1 and s[2] == 7); return logits[1][7][5] - logits[1][7][2] end\n"
        "local z = m:patch_sweep{clean = ids, corrupt = other, hook = 'z', metric = fn}\n"
        "local s = z.values:shape(); assert(s[1] == 2 and s[2] == 4)\n"
        "assert(calls <= 2 + 8 and calls > 2, calls)\n"
        "local zp = m:patch_sweep{clean = ids, corrupt = other, hook = 'z', positions = true, metric = fn}\n"
        "s = zp.values:shape(); assert(s[1] == 8 and s[2] == 7 and zp.row_labels[5] == 'L1H0')\n"
        "for p = 1, 2 do assert(zp.values[1][p] == 0, 'before the difference') end\n"
        "local k = m:patch_sweep{clean = ids, corrupt = other, hook = 'k', metric = fn}\n"
        "assert(k.values:shape()[2] == 2, 'k has the kv heads')\n"
        "local pt = m:patch_sweep{clean = ids, corrupt = other, hook = 'pattern', metric = fn}\n"
        "assert(pt.values:shape()[2] == 4)\n");
    fails("m:patch_sweep{clean = ids, corrupt = other, metric = function() error('boom') end}", "LuaError",
          "patch_sweep: metric: ");
    cr_assert(strstr(R.evalue, "boom"), "%s", R.evalue);
    fails("m:patch_sweep{clean = ids, corrupt = other, metric = function() return {} end}", "LuaError",
          "must return a number");
    fails("m:patch_sweep{clean = ids, corrupt = {1, 2}, metric = {token = 1}}", "LuaError",
          "same number of tokens (clean 7, corrupt 2)");
    fails("m:patch_sweep{clean = ids, corrupt = other, hook = 'nope', metric = {token = 1}}", "LuaError",
          "hook must be one of");
    fails("m:patch_sweep{clean = ids, corrupt = other}", "LuaError", "metric = ");
    fails("m:patch_sweep{clean = ids, metric = {token = 1}}", "LuaError", "are required");
    run("assert(m:run(ids).logits:shape()[2] == 7, 'the model still works')");
}

/* ---- interrupts, on a model big enough that a sweep takes seconds ---- */

static void big_model(char *path)
{
    enum { D = 128, L = 4, F = 512, V = 50, C = 256 };
    snprintf(path, 64, "/tmp/lp_sweep_XXXXXX");
    cr_assert_not_null(mkdtemp(path));
    char p[128];
    snprintf(p, sizeof p, "%s/config.json", path);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\",\"n_embd\":%d,\"n_head\":4,"
               "\"vocab_size\":%d,\"n_layer\":%d,\"n_positions\":%d,\"n_inner\":%d}", D, V, L, C, F);
    fclose(f);
    struct { char name[48]; int nd; int64_t a, b; float off; } s[64];
    int n = 0;
#define T(nm, nd_, a_, b_, off_) snprintf(s[n].name, 48, "%s", nm), s[n].nd = nd_, s[n].a = a_, s[n].b = b_, s[n].off = off_, n++
    T("wte.weight", 2, V, D, 0);
    T("wpe.weight", 2, C, D, 0);
    T("ln_f.weight", 1, D, 0, 1);
    T("ln_f.bias", 1, D, 0, 0);
    for (int l = 0; l < L; l++) {
        char b[48];
#define B(suffix, nd_, a_, b_, off_) snprintf(b, sizeof b, "h.%d.%s", l, suffix), T(b, nd_, a_, b_, off_)
        B("ln_1.weight", 1, D, 0, 1); B("ln_1.bias", 1, D, 0, 0); B("ln_2.weight", 1, D, 0, 1);
        B("ln_2.bias", 1, D, 0, 0); B("attn.c_attn.weight", 2, D, 3 * D, 0); B("attn.c_attn.bias", 1, 3 * D, 0, 0);
        B("attn.c_proj.weight", 2, D, D, 0); B("attn.c_proj.bias", 1, D, 0, 0); B("mlp.c_fc.weight", 2, D, F, 0);
        B("mlp.c_fc.bias", 1, F, 0, 0); B("mlp.c_proj.weight", 2, F, D, 0); B("mlp.c_proj.bias", 1, D, 0, 0);
#undef B
    }
#undef T
    const char *names[64];
    lp_tensor *ts[64];
    lp_rng g;
    lp_rng_seed(&g, 1);
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {s[i].a, s[i].b};
        ts[i] = lp_tensor_empty(s[i].nd, shape, LP_DEVICE_CPU);
        for (int64_t k = 0; k < lp_tensor_numel(ts[i]); k++)
            ts[i]->data[k] = s[i].off + 0.05f * (float)lp_rng_normal(&g);
        names[i] = s[i].name;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    cr_assert_eq(lp_safetensors_write(p, names, (const lp_tensor *const *)ts, (size_t)n, LP_DTYPE_F32, NULL, NULL, 0),
                 0, "%s", lp_last_error());
    for (int i = 0; i < n; i++)
        lp_tensor_free(ts[i]);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static double t_requested;

static void *interrupt_later(void *arg)
{
    usleep((useconds_t)(*(double *)arg * 1e6));
    t_requested = now();
    lp_interrupt_request();
    return NULL;
}

Test(analysis_lua, patch_sweep_is_interruptible_and_shows_progress, .timeout = 120)
{
    big_model(dir);
    char code[256];
    snprintf(code, sizeof code,
             "m = loupe.load('%s'); a, b = {}, {}\n"
             "for i = 1, 200 do a[i] = (i * 7) %% 50; b[i] = (i * 7) %% 50 end; b[2] = (b[2] + 1) %% 50\n"
             "kept = 'kept'", dir);
    run(code);
    double t0 = now();
    run("quick = m:patch_sweep{clean = a, corrupt = b, hook = 'resid_pre', positions = false, metric = {token = 1}}");
    double one = now() - t0;
    cr_assert(one < 5, "a 4-run sweep took %.2f s", one);
    /* a whole sweep is 800 patched runs: far longer than the interrupt's delay */
    double delay = 1.5;
    pthread_t th;
    pthread_create(&th, NULL, interrupt_later, &delay);
    n_display = n_update = 0;
    fails("s = m:patch_sweep{clean = a, corrupt = b, hook = 'resid_pre', metric = {token = 1}}", "KeyboardInterrupt",
          "interrupted");
    double late = now() - t_requested;
    pthread_join(th, NULL);
    cr_assert(late < 0.5, "stopped %.3f s after the interrupt", late);
    cr_assert(n_display >= 1, "a progress bar was shown (%d displays, %d updates)", n_display, n_update);
    cr_assert(strstr(text_of(last_display), "patch_sweep resid_pre"), "%s", text_of(last_display));
    /* state intact: variables, the model, a sweep */
    run("assert(kept == 'kept' and s == nil and quick.values[1][1] == 1)\n"
        "local again = m:patch_sweep{clean = a, corrupt = b, hook = 'resid_pre', positions = false, metric = {token = 1}}\n"
        "assert(again.values[1][1] == 1 and again.clean == quick.clean)");
    /* an interrupt inside the metric function */
    pthread_create(&th, NULL, interrupt_later, &(double){0.3});
    fails("m:patch_sweep{clean = a, corrupt = b, hook = 'resid_pre', metric = function(l) loupe.sleep(0.05) return 1 end}",
          "KeyboardInterrupt", "interrupted");
    pthread_join(th, NULL);
}
