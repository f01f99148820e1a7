/* controller/events: GET /v1/events — server-sent events from the persisted event log. Each
 * event carries its log id, so a client that reconnects with Last-Event-ID (or ?after=N) gets
 * exactly what it missed, across controller restarts. A stream that is behind (a catch-up, or
 * a client that reads slower than events come) is sent from the log one page at a time, the
 * next page when its connection has written the last: what a stream holds in memory is one
 * page, whatever the log's size or the client's speed. Loop thread only. */
#include "controller/controller-internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
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
	bool behind;    /* sent from the log by pages as it drains, not by the broadcast */
	struct event *more_ev; /* owned: the next page when the last one had nothing to send */
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
	if (s->more_ev)
		event_free(s->more_ev);
	free(s);
}

/* Bytes the stream's connection has not written yet. */
static size_t unsent(const struct sse_sub *s)
{
	struct evhttp_connection *c = evhttp_request_get_connection(s->req);
	struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
	return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void fill(struct sse_sub *s);

/* Everything sent so far is written: a stream that is behind gets its next page. */
static void on_drained(struct evhttp_connection *c, void *arg)
{
	struct sse_sub *s = arg;
	(void)c;
	if (s->behind)
		fill(s);
}

static void send_chunk(struct sse_sub *s, struct evbuffer *b)
{
	evhttp_send_reply_chunk_with_cb(s->req, b, on_drained, s);
}

void events__gone(struct server *srv, struct sse_sub *s)
{
	server__drop_request(s->req);
	sub_remove(srv, s);
}

#define SSE_PAGE_BYTES (64 * 1024)  /* one page of a stream that is behind, about */
#define SSE_UNSENT_MAX (256 * 1024) /* unwritten bytes before a stream falls behind */

struct send_ctx {
	struct server *srv;
	int64_t last;
	int n;
};

/* Adds the event to b when the stream wants it; the stream has then seen it either way. */
static void add_event(struct sse_sub *s, struct evbuffer *b, const struct store_event *ev)
{
	if (ev->id <= s->last)
		return;
	s->last = ev->id;
	if (s->job && ev->job_id != s->job)
		return;
	evbuffer_add_printf(b, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)ev->id, ev->type,
			    ev->data);
}

/* The broadcast: one new event to every stream that keeps up. One whose connection has more
 * than SSE_UNSENT_MAX unwritten falls behind: from then on it is sent from the log. */
static int on_event(void *ctx, const struct store_event *ev)
{
	struct send_ctx *c = ctx;
	c->last = ev->id;
	c->n++;
	for (struct sse_sub *s = c->srv->subs; s; s = s->next) {
		if (s->behind || ev->id <= s->last)
			continue;
		if (unsent(s) > SSE_UNSENT_MAX) {
			s->behind = true; /* on_drained resumes it from s->last */
			continue;
		}
		struct evbuffer *b = evbuffer_new();
		if (!b)
			continue;
		add_event(s, b, ev);
		send_chunk(s, b);
		evbuffer_free(b);
	}
	return 0;
}

/* Sends the events recorded after `from` to every stream that keeps up; returns the highest id
 * seen. (These are the events since the last broadcast: a handful.) */
static int64_t pump(struct server *srv, int64_t from)
{
	struct err e;
	struct send_ctx c = { srv, from, 0 };
	do {
		c.n = 0;
		if (store_jobs(srv->rd)->events_after(srv->rd, c.last, SSE_BATCH, on_event, &c, &e) < 0) {
			log_warn("controller", "events: %s", e.msg);
			break;
		}
	} while (c.n == SSE_BATCH);
	return c.last;
}

struct page {
	struct sse_sub *s;
	struct evbuffer *b;
	int n;
};

static int on_page_event(void *ctx, const struct store_event *ev)
{
	struct page *pg = ctx;
	pg->n++;
	add_event(pg->s, pg->b, ev);
	return evbuffer_get_length(pg->b) >= SSE_PAGE_BYTES; /* full: the rest next time */
}

/* One page of the log after s->last to a stream that is behind. The page goes out with
 * on_drained, which asks for the next; the page that reaches the log's end puts the stream
 * back on the broadcast. A page with nothing for the stream (another job's events) goes on at
 * the next loop turn, so a long filtered catch-up never holds the loop. */
static void fill(struct sse_sub *s)
{
	struct server *srv = s->srv;
	struct page pg = { s, evbuffer_new(), 0 };
	struct err e;
	if (!pg.b)
		return;
	int r = store_jobs(srv->rd)->events_after(srv->rd, s->last, SSE_BATCH, on_page_event, &pg, &e);
	if (r < 0)
		log_warn("controller", "events: %s", e.msg);
	else if (r == 0 && pg.n < SSE_BATCH)
		s->behind = false; /* at the end of the log: the broadcast sends what comes next */
	if (evbuffer_get_length(pg.b))
		send_chunk(s, pg.b);
	else if (s->behind && r >= 0 && s->more_ev)
		event_active(s->more_ev, EV_READ, 0);
	evbuffer_free(pg.b);
}

static void on_more(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	fill(arg);
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
	srv->last_event = pump(srv, srv->last_event);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	for (struct sse_sub *s = srv->subs; s; s = s->next) {
		struct evbuffer *b = unsent(s) ? NULL : evbuffer_new(); /* idle streams only */
		if (!b)
			continue;
		evbuffer_add_printf(b, ": ping\n\n");
		send_chunk(s, b);
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
	s->behind = true; /* the first page is the catch-up's (or empty: then it is live) */
	if (!(s->more_ev = event_new(srv->base, -1, 0, on_more, s))) {
		free(s);
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
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
	/* the catch-up, a page at a time; then the broadcast sends what comes next */
	fill(s);
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
