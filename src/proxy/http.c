/* proxy http: an HTTP/1.1 observer that sits on a connection as a protocol module
 * (struct proxy_protocol) and counts, per upstream label (release), requests by status class
 * and a latency histogram — pipelining (FIFO of pending requests), chunked bodies, HEAD and
 * Upgrade (then bytes only) included. It never changes a byte; bytes that are not HTTP stop
 * the observation of that connection, not the connection. Counters take a lock per response. */
#include "proxy/proxy.h"

#include <http_parser.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_MAX 64 /* pipelined requests remembered per connection */
#define LABELS_MAX 16

struct http_label {
	struct proxy_http_stats s;
	bool used;
};

struct proxy_http {
	pthread_mutex_t mu;
	struct http_label labels[LABELS_MAX];
};

struct pending {
	int64_t t0;
	bool head;
};

struct hconn {
	struct proxy_http *h;
	char label[PROXY_TOXIC_NAME_MAX];
	http_parser req, resp;
	struct pending q[PENDING_MAX];
	size_t qh, qn;
	bool dead, upgraded;
	bool upgrade_asked; /* a request asked to upgrade: the response decides */
};

struct proxy_http *proxy_http_new(void)
{
	struct proxy_http *h = calloc(1, sizeof *h);
	if (h)
		pthread_mutex_init(&h->mu, NULL);
	return h;
}

void proxy_http_free(struct proxy_http *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* Bucket i holds latencies up to 2^(i/4) us. */
static int bucket(int64_t us)
{
	if (us <= 1)
		return 0;
	int b = (int)ceil(4.0 * log2((double)us));
	return b >= PROXY_HTTP_BUCKETS ? PROXY_HTTP_BUCKETS - 1 : b;
}

/* Declared in hproxy-internal.h: the reverse proxy counts into the same histogram. */
int proxy__http_bucket(int64_t us);
int proxy__http_bucket(int64_t us)
{
	return bucket(us);
}

double proxy_http_bucket_us(int i)
{
	return pow(2.0, i / 4.0);
}

double proxy_http_percentile_us(const struct proxy_http_stats *s, double p)
{
	uint64_t total = 0, seen = 0;
	for (int i = 0; i < PROXY_HTTP_BUCKETS; i++)
		total += s->hist[i];
	if (!total)
		return 0;
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)total);
	for (int i = 0; i < PROXY_HTTP_BUCKETS; i++) {
		seen += s->hist[i];
		if (seen >= want && seen)
			return proxy_http_bucket_us(i);
	}
	return proxy_http_bucket_us(PROXY_HTTP_BUCKETS - 1);
}

static struct http_label *label_get(struct proxy_http *h, const char *name)
{
	for (int i = 0; i < LABELS_MAX; i++)
		if (h->labels[i].used && !strcmp(h->labels[i].s.label, name))
			return &h->labels[i];
	for (int i = 0; i < LABELS_MAX; i++)
		if (!h->labels[i].used) {
			h->labels[i].used = true;
			snprintf(h->labels[i].s.label, sizeof h->labels[i].s.label, "%s", name);
			return &h->labels[i];
		}
	return NULL; /* more releases than slots: not counted */
}

static void record(struct hconn *c, int status, int64_t t0)
{
	int64_t us = (time_mono_ns() - t0) / 1000;
	pthread_mutex_lock(&c->h->mu);
	struct http_label *l = label_get(c->h, c->label);
	if (l) {
		l->s.requests++;
		l->s.status[status >= 100 && status < 600 ? status / 100 : 0]++;
		l->s.hist[bucket(us)]++;
	}
	pthread_mutex_unlock(&c->h->mu);
}

static void count_error(struct hconn *c)
{
	pthread_mutex_lock(&c->h->mu);
	struct http_label *l = label_get(c->h, c->label);
	if (l)
		l->s.parse_errors++;
	pthread_mutex_unlock(&c->h->mu);
}

static int req_begin(http_parser *p)
{
	struct hconn *c = p->data;
	if (c->qn == PENDING_MAX) { /* a client that pipelines this deep: forget the oldest */
		c->qh = (c->qh + 1) % PENDING_MAX;
		c->qn--;
	}
	struct pending *e = &c->q[(c->qh + c->qn++) % PENDING_MAX];
	e->t0 = time_mono_ns();
	e->head = false;
	return 0;
}

static int req_headers(http_parser *p)
{
	struct hconn *c = p->data;
	if (c->qn)
		c->q[(c->qh + c->qn - 1) % PENDING_MAX].head = p->method == HTTP_HEAD;
	return 0;
}

static int resp_headers(http_parser *p)
{
	struct hconn *c = p->data;
	/* a response to HEAD has no body whatever its headers say */
	return c->qn && c->q[c->qh].head ? 1 : 0;
}

static int resp_complete(http_parser *p)
{
	struct hconn *c = p->data;
	if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
		return 0; /* interim response: the final one follows */
	if (c->qn) {
		record(c, p->status_code, c->q[c->qh].t0);
		c->qh = (c->qh + 1) % PENDING_MAX;
		c->qn--;
	}
	return 0;
}

static const http_parser_settings req_settings = {
	.on_message_begin = req_begin,
	.on_headers_complete = req_headers,
};
static const http_parser_settings resp_settings = {
	.on_headers_complete = resp_headers,
	.on_message_complete = resp_complete,
};

static void *conn_open(void *mod, const char *label)
{
	struct hconn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->h = mod;
	snprintf(c->label, sizeof c->label, "%s", label ? label : "");
	http_parser_init(&c->req, HTTP_REQUEST);
	http_parser_init(&c->resp, HTTP_RESPONSE);
	c->req.data = c->resp.data = c;
	return c;
}

static int on_bytes(void *state, enum proxy_dir dir, const char *p, size_t n)
{
	struct hconn *c = state;
	if (!c || c->dead || c->upgraded)
		return 0;
	if (dir == PROXY_UPSTREAM && c->upgrade_asked)
		return 0; /* nothing to read until the answer to the upgrade request */
	http_parser *hp = dir == PROXY_UPSTREAM ? &c->req : &c->resp;
	size_t done = http_parser_execute(hp, dir == PROXY_UPSTREAM ? &req_settings : &resp_settings,
					  p, n);
	if (hp->upgrade && dir == PROXY_UPSTREAM) {
		c->upgrade_asked = true;
		return 0;
	}
	if (hp->upgrade) {
		c->upgraded = true; /* 101: WebSocket and friends, bytes from here on */
		return 0;
	}
	if (dir == PROXY_DOWNSTREAM && c->upgrade_asked && c->qn == 0) {
		c->upgrade_asked = false; /* refused: the client speaks HTTP again */
		http_parser_init(&c->req, HTTP_REQUEST);
		c->req.data = c;
	}
	if (done != n || HTTP_PARSER_ERRNO(hp) != HPE_OK) {
		c->dead = true;
		count_error(c);
	}
	return 0;
}

static void conn_close(void *state)
{
	free(state);
}

void proxy_http_protocol(struct proxy_http *h, struct proxy_protocol *out)
{
	out->conn_open = conn_open;
	out->on_bytes = on_bytes;
	out->conn_close = conn_close;
	out->mod = h;
}

int proxy_http_stats(struct proxy_http *h, const char *label, struct proxy_http_stats *out)
{
	int r = -1;
	pthread_mutex_lock(&h->mu);
	for (int i = 0; i < LABELS_MAX; i++)
		if (h->labels[i].used && !strcmp(h->labels[i].s.label, label)) {
			*out = h->labels[i].s;
			r = 0;
		}
	pthread_mutex_unlock(&h->mu);
	return r;
}
