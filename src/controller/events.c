/* controller/events: GET /v1/events — server-sent events from the persisted event log. Each
 * event carries its log id, so a client that reconnects with Last-Event-ID (or ?after=N) gets
 * exactly what it missed, across controller restarts. Loop thread only. */
#include "controller/controller-internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#define SSE_BATCH 500
#define SSE_PING_S 10

struct sse_sub {
	struct server *srv;
	struct evhttp_request *req;
	int64_t last;   /* highest event id sent (or skipped by the filter) */
	int64_t job;    /* only this job's events, 0 = all */
	struct sse_sub *next;
};

static void sub_remove(struct server *srv, struct sse_sub *s)
{
	for (struct sse_sub **pp = &srv->subs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			srv->n_subs--;
			break;
		}
	free(s);
}

void events__gone(struct server *srv, struct sse_sub *s)
{
	server__drop_request(s->req);
	sub_remove(srv, s);
}

struct send_ctx {
	struct sse_sub *only; /* catch-up of one subscriber, or NULL: everyone */
	struct server *srv;
	int64_t last;
	int n;
};

static void send_event(struct sse_sub *s, const struct store_event *ev)
{
	if (ev->id <= s->last)
		return;
	s->last = ev->id;
	if (s->job && ev->job_id != s->job)
		return;
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)ev->id, ev->type,
			    ev->data);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
}

static int on_event(void *ctx, const struct store_event *ev)
{
	struct send_ctx *c = ctx;
	c->last = ev->id;
	c->n++;
	if (c->only) {
		send_event(c->only, ev);
		return 0;
	}
	for (struct sse_sub *s = c->srv->subs; s; s = s->next)
		send_event(s, ev);
	return 0;
}

/* Sends events after `from` (to one subscriber or all); returns the highest id seen. */
static int64_t pump(struct server *srv, struct sse_sub *only, int64_t from)
{
	struct err e;
	struct send_ctx c = { only, srv, from, 0 };
	do {
		c.n = 0;
		if (store_jobs(srv->rd)->events_after(srv->rd, c.last, SSE_BATCH, on_event, &c, &e) < 0) {
			log_warn("controller", "events: %s", e.msg);
			break;
		}
	} while (c.n == SSE_BATCH);
	return c.last;
}

static int skip_event(void *ctx, const struct store_event *ev)
{
	*(int64_t *)ctx = ev->id;
	return 0;
}

void events_broadcast(struct server *srv)
{
	if (srv->last_event < 0) {
		/* at start: the newest id, without sending the history to anyone */
		int64_t last = 0, prev;
		struct err e;
		do {
			prev = last;
			if (store_jobs(srv->rd)->events_after(srv->rd, last, 10000, skip_event, &last, &e) < 0)
				break;
		} while (last != prev);
		srv->last_event = last;
		return;
	}
	srv->last_event = pump(srv, NULL, srv->last_event);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	for (struct sse_sub *s = srv->subs; s; s = s->next) {
		struct evbuffer *b = evbuffer_new();
		evbuffer_add_printf(b, ": ping\n\n");
		evhttp_send_reply_chunk(s->req, b);
		evbuffer_free(b);
	}
}

void events_subscribe(struct server *srv, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *lei = evhttp_find_header(h, "Last-Event-ID");
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	int64_t after = srv->last_event < 0 ? 0 : srv->last_event, job = 0;
	struct evkeyvalq q;

	if (srv->n_subs >= CTL_SSE_MAX) {
		server_reply_error(req, 503, "busy", "%d event streams are open already; retry later",
				   CTL_SSE_MAX);
		return;
	}
	if (qs && evhttp_parse_query_str(qs, &q) == 0) {
		const char *a = evhttp_find_header(&q, "after"), *j = evhttp_find_header(&q, "job");
		bool bad = (a && api_parse_event_id(a, &after) < 0) || (j && api_parse_event_id(j, &job) < 0);
		evhttp_clear_headers(&q);
		if (bad) {
			server_reply_error(req, 400, "input", "after and job must be decimal ids");
			return;
		}
	}
	if (lei && api_parse_event_id(lei, &after) < 0) {
		server_reply_error(req, 400, "input", "Last-Event-ID must be a decimal event id");
		return;
	}
	struct sse_sub *s = calloc(1, sizeof(*s));
	if (!s) {
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
	s->srv = srv;
	s->req = req;
	s->last = after;
	s->job = job;
	s->next = srv->subs;
	srv->subs = s;
	srv->n_subs++;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	evhttp_add_header(oh, "Content-Type", "text/event-stream");
	evhttp_add_header(oh, "Cache-Control", "no-cache");
	evhttp_send_reply_start(req, 200, "OK");
	struct conn_rec *rec = server_conn(srv, req);
	if (rec)
		rec->sub = s;
	/* catch up to what everyone else has been sent; later events come with the broadcast */
	pump(srv, s, after);
	if (srv->last_event >= 0 && s->last < srv->last_event)
		s->last = srv->last_event;
	if (!srv->ping_ev) {
		struct timeval tv = { SSE_PING_S, 0 };
		srv->ping_ev = event_new(srv->base, -1, EV_PERSIST, on_ping, srv);
		if (srv->ping_ev)
			event_add(srv->ping_ev, &tv);
	}
}

int events_end_all(struct server *srv)
{
	int n = 0;
	while (srv->subs) {
		struct sse_sub *s = srv->subs;
		struct conn_rec *rec = server_conn(srv, s->req);
		if (rec)
			rec->sub = NULL;
		/* read after the last chunk is written: evhttp then closes the connection */
		evhttp_add_header(evhttp_request_get_output_headers(s->req), "Connection", "close");
		evhttp_send_reply_end(s->req);
		sub_remove(srv, s);
		n++;
	}
	if (srv->ping_ev) {
		event_free(srv->ping_ev);
		srv->ping_ev = NULL;
	}
	return n;
}
