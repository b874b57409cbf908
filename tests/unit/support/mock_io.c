#include "mock_io.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "core/buf.h"
#include "core/error.h"

#define MOCK_KEY "mock-signing-key"

struct t_mock {
    lp_transport t;
    lp_signer signer;
    pthread_mutex_t mu;
    t_sent **sent; /* each allocated on its own, so pointers outlive a realloc */
    size_t n_sent, cap_sent;
    lp_msg *queue; /* shell requests waiting for next_shell, oldest first */
    size_t n_queue, cap_queue;
    char **answers; /* input replies, oldest first */
    size_t n_answers, cap_answers;
    int stops, exits;
    char error[512];
    lp_buf trace;
};

static void fail(t_mock *m, const char *what) /* with m->mu held */
{
    if (!m->error[0])
        snprintf(m->error, sizeof m->error, "%s", what);
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(*v, c * size);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

/* Encodes a message as the server would, decodes it back, and records it. */
static int record(t_mock *m, int channel, const lp_frames *ids, const char *msg_type, json_t *parent,
                  json_t *metadata, json_t *content)
{
    lp_frames f = {0};
    t_sent *s = calloc(1, sizeof *s);
    char why[400] = "";
    int rc = -1;
    if (!s) {
        json_decref(metadata);
        json_decref(content);
        snprintf(why, sizeof why, "out of memory recording %s", msg_type);
    } else if (lp_msg_build(&m->signer, T_MOCK_SESSION, ids, msg_type, parent, metadata, content, &f) < 0) {
        snprintf(why, sizeof why, "%s could not be encoded: %s", msg_type, lp_last_error());
    } else if (lp_msg_decode(&m->signer, &f, &s->msg) < 0) {
        snprintf(why, sizeof why, "%s does not decode back: %s", msg_type, lp_last_error());
    } else {
        s->channel = channel;
        rc = 0;
    }
    lp_frames_clear(&f);
    pthread_mutex_lock(&m->mu);
    if (rc == 0 && grow((void **)&m->sent, &m->cap_sent, m->n_sent, sizeof *m->sent) < 0) {
        snprintf(why, sizeof why, "out of memory recording %s", msg_type);
        rc = -1;
    }
    if (rc == 0) {
        m->sent[m->n_sent++] = s;
    } else {
        fail(m, why);
        if (s)
            lp_msg_clear(&s->msg);
        free(s);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- the transport ------------------------------------------------------------------------ */

static int mock_reply(void *ud, int channel, const lp_msg *req, const char *msg_type, json_t *content)
{
    return record(ud, channel, &req->ids, msg_type, req->header, NULL, content);
}

static int mock_publish(void *ud, const char *msg_type, json_t *parent, json_t *content, json_t *metadata)
{
    char topic[128];
    snprintf(topic, sizeof topic, "kernel.%s.%s", T_MOCK_SESSION, msg_type);
    lp_frames ids = {0};
    lp_frames_push(&ids, topic, strlen(topic));
    int rc = record(ud, LP_CH_IOPUB, &ids, msg_type, parent, metadata, content);
    lp_frames_clear(&ids);
    return rc;
}

static int mock_next_shell(void *ud, lp_msg *out)
{
    t_mock *m = ud;
    pthread_mutex_lock(&m->mu);
    int got = m->n_queue > 0;
    if (got) {
        *out = m->queue[0];
        memmove(m->queue, m->queue + 1, (m->n_queue - 1) * sizeof *m->queue);
        m->n_queue--;
    }
    pthread_mutex_unlock(&m->mu);
    return got;
}

static int mock_input(void *ud, const lp_msg *req, const char *prompt, int password, lp_buf *out)
{
    t_mock *m = ud;
    if (record(m, LP_CH_STDIN, &req->ids, "input_request", req->header, NULL,
               json_pack("{s:s, s:b}", "prompt", prompt, "password", password)) < 0)
        return lp_set_error("cannot send the input request");
    pthread_mutex_lock(&m->mu);
    char *answer = NULL;
    if (m->n_answers) {
        answer = m->answers[0];
        memmove(m->answers, m->answers + 1, (m->n_answers - 1) * sizeof *m->answers);
        m->n_answers--;
    }
    pthread_mutex_unlock(&m->mu);
    if (!answer)
        return lp_set_error("the mock client has no answer for this input request");
    lp_buf_reset(out);
    lp_buf_puts(out, answer);
    free(answer);
    return 0;
}

static void mock_stop(void *ud)
{
    t_mock *m = ud;
    pthread_mutex_lock(&m->mu);
    m->stops++;
    pthread_mutex_unlock(&m->mu);
}

static void mock_exit_soon(void *ud)
{
    t_mock *m = ud;
    pthread_mutex_lock(&m->mu);
    m->exits++;
    pthread_mutex_unlock(&m->mu);
}

/* ---- set-up and requests -------------------------------------------------------------------- */

t_mock *t_mock_new(void)
{
    t_mock *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (lp_signer_init(&m->signer, "hmac-sha256", MOCK_KEY) < 0) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->t = (lp_transport){mock_reply, mock_publish, mock_next_shell, mock_input, mock_stop, mock_exit_soon, m};
    return m;
}

void t_mock_free(t_mock *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_sent; i++) {
        lp_msg_clear(&m->sent[i]->msg);
        free(m->sent[i]);
    }
    free(m->sent);
    for (size_t i = 0; i < m->n_queue; i++)
        lp_msg_clear(&m->queue[i]);
    free(m->queue);
    for (size_t i = 0; i < m->n_answers; i++)
        free(m->answers[i]);
    free(m->answers);
    lp_buf_free(&m->trace);
    lp_signer_clear(&m->signer);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const lp_transport *t_mock_transport(t_mock *m) { return &m->t; }

void t_mock_request(lp_msg *req, const char *msg_type, json_t *content)
{
    memset(req, 0, sizeof *req);
    lp_frames_push(&req->ids, T_MOCK_CLIENT, strlen(T_MOCK_CLIENT));
    req->header = lp_header_new("mock-client-session", "tester", msg_type);
    json_object_set_new(req->header, "subshell_id", json_null());
    req->parent = json_object();
    req->metadata = json_object();
    req->content = content ? content : json_object();
}

void t_mock_queue(t_mock *m, lp_msg *req)
{
    pthread_mutex_lock(&m->mu);
    if (grow((void **)&m->queue, &m->cap_queue, m->n_queue, sizeof *m->queue) < 0) {
        fail(m, "out of memory queueing a request");
        lp_msg_clear(req);
    } else {
        m->queue[m->n_queue++] = *req;
        memset(req, 0, sizeof *req);
    }
    pthread_mutex_unlock(&m->mu);
}

void t_mock_answer(t_mock *m, const char *text)
{
    pthread_mutex_lock(&m->mu);
    char *copy = strdup(text);
    if (!copy || grow((void **)&m->answers, &m->cap_answers, m->n_answers, sizeof *m->answers) < 0) {
        fail(m, "out of memory queueing an answer");
        free(copy);
    } else {
        m->answers[m->n_answers++] = copy;
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---- reading what was sent ------------------------------------------------------------------ */

size_t t_mock_count(t_mock *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_sent;
    pthread_mutex_unlock(&m->mu);
    return n;
}

const t_sent *t_mock_at(t_mock *m, size_t i)
{
    pthread_mutex_lock(&m->mu);
    const t_sent *s = i < m->n_sent ? m->sent[i] : NULL;
    pthread_mutex_unlock(&m->mu);
    return s;
}

static const char *msg_id(json_t *header) { return json_string_value(json_object_get(header, "msg_id")); }

static int is_for(const t_sent *s, const lp_msg *req)
{
    const char *want = msg_id(req->header), *got = msg_id(s->msg.parent);
    return want && got && strcmp(want, got) == 0;
}

const char *t_mock_trace(t_mock *m, const lp_msg *req)
{
    lp_buf_reset(&m->trace);
    size_t n = t_mock_count(m);
    for (size_t i = 0; i < n; i++) {
        const t_sent *s = t_mock_at(m, i);
        if (!is_for(s, req))
            continue;
        const char *type = lp_msg_type(&s->msg);
        lp_buf_printf(&m->trace, "%s%s:%s", m->trace.len ? " " : "", lp_channel_names[s->channel], type);
        if (strcmp(type, "status") == 0)
            lp_buf_printf(&m->trace, "(%s)", json_string_value(json_object_get(s->msg.content, "execution_state")));
    }
    return lp_buf_str(&m->trace);
}

const t_sent *t_mock_find(t_mock *m, const lp_msg *req, const char *msg_type)
{
    size_t n = t_mock_count(m);
    for (size_t i = 0; i < n; i++) {
        const t_sent *s = t_mock_at(m, i);
        if (is_for(s, req) && strcmp(lp_msg_type(&s->msg), msg_type) == 0)
            return s;
    }
    return NULL;
}

int t_mock_stops(t_mock *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->stops;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int t_mock_exits(t_mock *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->exits;
    pthread_mutex_unlock(&m->mu);
    return n;
}

const char *t_mock_error(t_mock *m)
{
    pthread_mutex_lock(&m->mu);
    const char *e = m->error[0] ? m->error : NULL;
    pthread_mutex_unlock(&m->mu);
    return e;
}
