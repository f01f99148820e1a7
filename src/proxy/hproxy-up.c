/* hproxy up: the upstream side of one request — round-robin choice in the request's set,
 * connecting (next upstream on failure, then 502), keep-alive pools (a reused connection that
 * closes before answering is retried once when the request can be replayed), streaming the
 * request body (Content-Length or chunked framing) and the response (libhttp-parser framing:
 * HEAD, 1xx, close-delimited), and the byte tunnel after a 101. Bytes are never buffered whole:
 * each direction holds at most one read buffer and stops reading until it is written. */
#include "proxy/hproxy-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- response framing ---- */

static int on_resp_headers(http_parser *p)
{
	struct hup *u = p->data;
	u->status = p->status_code;
	/* a response to HEAD has no body whatever its headers say */
	return u->head_req && p->status_code >= 200 ? 1 : 0;
}

static int on_resp_complete(http_parser *p)
{
	struct hup *u = p->data;
	if (u->status >= 100 && u->status < 200 && u->status != 101)
		return 0; /* interim (100 Continue): the final response follows */
	u->resp_done = true;
	u->keep = http_should_keep_alive(p) != 0;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings resp_settings = {
	.on_headers_complete = on_resp_headers,
	.on_message_complete = on_resp_complete,
};

static int on_body_complete(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings chunk_settings = {
	.on_message_complete = on_body_complete,
};

/* ---- pools and connections ---- */

void hproxy__up_close(struct hloop *lp, struct hup *u)
{
	if (u->dead)
		return;
	u->dead = true;
	if (u->fd >= 0) /* see hproxy__client_close */
		epoll_ctl(lp->ep, EPOLL_CTL_DEL, u->fd, NULL);
	close(u->fd);
	if (u->cl) {
		u->cl->up = NULL;
		u->pool->active--;
		hproxy__pool_release(lp, u->pool); /* an idle one's pool is the caller's to free */
	} else {
		for (struct hup **pp = &u->pool->idle; *pp; pp = &(*pp)->next)
			if (*pp == u) {
				*pp = u->next;
				u->pool->n_idle--;
				break;
			}
	}
	u->next = lp->dead_up;
	lp->dead_up = u;
}

static void pool_put(struct hloop *lp, struct hup *u)
{
	struct hp_pool *p = u->pool;
	if (p->stale || p->n_idle >= lp->h->o.pool_max || lp->quitting) {
		hproxy__up_close(lp, u);
		return;
	}
	u->cl->up = NULL;
	u->cl = NULL;
	p->active--;
	u->next = p->idle;
	p->idle = u;
	p->n_idle++;
}

void hproxy__up_event(struct hloop *lp, struct hup *u, uint32_t ev)
{
	if (u->dead)
		return;
	bool readable = ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
	if (readable)
		u->rd = true;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->hup = true;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->wr = true;
	if (!u->cl) {
		if (readable)
			hproxy__up_close(lp, u); /* idle in the pool: the upstream closed it */
		return;
	}
	hproxy__client_run(u->cl);
}

static struct hp_pool *pool_of(struct hcl *c)
{
	struct hloop *lp = c->lp;
	if (c->set == lp->set)
		return lp->set_pool[c->ui];
	struct hp_pool *p = hproxy__pool_get(lp, c->set->v[c->ui].key);
	bool in_set = false;
	for (size_t i = 0; lp->set && i < lp->set->n && p; i++)
		in_set = in_set || lp->set_pool[i] == p;
	if (p && !in_set)
		p->stale = true;
	return p;
}

static int label_of(struct hcl *c)
{
	struct hloop *lp = c->lp;
	if (c->set == lp->set)
		return lp->set_label[c->ui];
	return hproxy__label_get(lp, c->set->v[c->ui].label);
}

static bool next_upstream(struct hcl *c)
{
	if (++c->tries >= c->set->n)
		return false;
	c->ui = (c->ui + 1) % c->set->n;
	c->label = label_of(c);
	hproxy__flight(c, c->label);
	return true;
}

static void resp_begin(struct hup *u, bool head)
{
	http_parser_init(&u->rp, HTTP_RESPONSE);
	u->rp.data = u;
	u->head_req = head;
	u->got_bytes = u->resp_done = u->junk = u->keep = false;
	u->status = 0;
	u->rb_off = u->rb_len = 0;
}

/* Gives the request an upstream connection: pooled, or a new one (an upstream that refuses at
 * once passes the request to the next). */
static void up_start(struct hcl *c, bool allow_pool)
{
	struct hloop *lp = c->lp;
	for (;;) {
		const struct hp_upstream *us = &c->set->v[c->ui];
		struct hp_pool *p = pool_of(c);
		struct hup *u = NULL;
		if (!p) {
			hproxy__client_answer(c, 502, "out of memory");
			return;
		}
		if (allow_pool && p->idle) {
			u = p->idle;
			p->idle = u->next;
			p->n_idle--;
			u->reused = true;
		} else {
			int fd = us->resolved ? net_connect_start(&us->addr) : -EHOSTUNREACH;
			if (fd >= 0) {
				u = calloc(1, sizeof *u);
				char *rb = u ? malloc(HP_RESP_CHUNK) : NULL;
				if (!rb) {
					free(u);
					close(fd);
					hproxy__client_answer(c, 502, "out of memory");
					return;
				}
				u->rb = rb;
				u->fd = fd;
				u->pool = p;
				u->tag = (struct hp_tag){ TAG_HP_UP, u };
				u->connecting = true;
				hproxy__ep_add(lp, fd, &u->tag);
			} else if (next_upstream(c)) {
				continue;
			} else {
				hproxy__client_answer(c, 502, "no upstream accepted the connection");
				return;
			}
		}
		p->active++;
		u->cl = c;
		c->up = u;
		resp_begin(u, c->info.method == HTTP_HEAD);
		c->state = u->connecting ? CS_CONNECT : CS_REQ;
		hproxy__timer_arm(lp, &c->tm, u->connecting ? HT_CONNECT : HT_UPSTREAM);
		return;
	}
}

void hproxy__route(struct hcl *c)
{
	struct hloop *lp = c->lp;
	struct hp_set *s = lp->set;
	atomic_fetch_add(&s->refs, 1);
	hproxy__set_unref(c->set);
	c->set = s;
	c->ui = lp->rr++ % s->n;
	c->tries = 0;
	c->label = lp->set_label[c->ui];
	hproxy__flight(c, c->label);
	if (c->chunked) { /* the framing parser starts on the head, then follows the body */
		http_parser_init(&c->cp, HTTP_REQUEST);
		c->cp.data = c;
		http_parser_execute(&c->cp, &chunk_settings, c->in + c->body_start - c->head_len,
				    c->head_len);
	}
	up_start(c, true);
}

static void connect_failed(struct hcl *c, const char *why)
{
	hproxy__up_close(c->lp, c->up);
	if (next_upstream(c))
		up_start(c, true);
	else
		hproxy__client_answer(c, 502, why);
}

/* The upstream closed or reset before the response ended. */
static void up_failed(struct hcl *c)
{
	struct hup *u = c->up;
	if (!u->got_bytes && u->reused && !c->retried && c->replayable) {
		c->retried = true; /* a pooled connection the upstream had closed: once more, fresh */
		hproxy__up_close(c->lp, u);
		c->head_sent = 0;
		c->in_off = c->body_start;
		c->body_left = c->info.content_length > 0 ? c->info.content_length : 0;
		c->body_done = c->body_left == 0;
		up_start(c, false);
		return;
	}
	if (!c->resp_started)
		hproxy__client_answer(c, 502, "the upstream closed the connection");
	else
		hproxy__client_close(c); /* cut mid-response: the client sees it end early */
}

void hproxy__req_timeout(struct hcl *c)
{
	if (c->state == CS_CONNECT)
		connect_failed(c, "no upstream accepted the connection in time");
	else if (!c->resp_started)
		hproxy__client_answer(c, 504, "the upstream did not answer in time");
	else
		hproxy__client_close(c);
	if (!c->dead)
		hproxy__client_run(c);
}

/* ---- the request's bytes ---- */

/* Bytes of in[in_off..] that belong to the request body; < 0 for bad chunk framing. */
static ssize_t body_avail(struct hcl *c)
{
	if (c->body_done)
		return 0;
	size_t have = c->in_len - c->in_off;
	if (!c->chunked)
		return (ssize_t)((int64_t)have < c->body_left ? (int64_t)have : c->body_left);
	if (HTTP_PARSER_ERRNO(&c->cp) == HPE_OK && c->cp_fed < c->in_len) {
		size_t m = http_parser_execute(&c->cp, &chunk_settings, c->in + c->cp_fed,
					       c->in_len - c->cp_fed);
		c->cp_fed += m;
		if (HTTP_PARSER_ERRNO(&c->cp) == HPE_PAUSED)
			c->body_end = c->cp_fed;
	}
	enum http_errno er = HTTP_PARSER_ERRNO(&c->cp);
	if (er != HPE_OK && er != HPE_PAUSED)
		return -1;
	return (ssize_t)((er == HPE_PAUSED ? c->body_end : c->in_len) - c->in_off);
}

/* Sends head and body bytes; returns 1 progress, 0 none, -1 the request ended otherwise. */
static int send_request(struct hcl *c)
{
	struct hup *u = c->up;
	const struct hproxy_opts *o = &c->lp->h->o;
	int progress = 0;
	while (u->wr) {
		struct iovec iov[2];
		struct msghdr msg = { .msg_iov = iov };
		ssize_t body = body_avail(c);
		if (body < 0) {
			if (!c->resp_started)
				hproxy__client_answer(c, 400, "malformed chunked request body");
			else
				hproxy__client_close(c);
			return -1;
		}
		if (c->chunked && o->max_body_bytes >= 0 && body > o->max_body_bytes - c->body_seen)
			body = o->max_body_bytes - c->body_seen + 1; /* one byte over is enough to know */
		if (c->head_sent < c->head.len)
			iov[msg.msg_iovlen++] = (struct iovec){ c->head.data + c->head_sent,
								c->head.len - c->head_sent };
		if (body)
			iov[msg.msg_iovlen++] = (struct iovec){ c->in + c->in_off, (size_t)body };
		if (!msg.msg_iovlen)
			break;
		ssize_t w = sendmsg(u->fd, &msg, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			u->wr = errno == EINTR;
			continue;
		}
		if (w < 0) {
			up_failed(c);
			return -1;
		}
		size_t total = c->head.len - c->head_sent + (size_t)body, n = (size_t)w;
		size_t hn = c->head.len - c->head_sent < n ? c->head.len - c->head_sent : n;
		c->head_sent += hn;
		n -= hn;
		c->in_off += n;
		c->body_seen += (int64_t)n;
		if (!c->chunked)
			c->body_left -= (int64_t)n;
		if ((size_t)w < total)
			u->wr = false;
		progress = 1;
		if (c->chunked && o->max_body_bytes >= 0 && c->body_seen > o->max_body_bytes) {
			if (!c->resp_started)
				hproxy__client_answer(c, 413, "request body too large");
			else
				hproxy__client_close(c);
			return -1;
		}
	}
	if (c->head_sent == c->head.len && !c->body_done &&
	    (c->chunked ? HTTP_PARSER_ERRNO(&c->cp) == HPE_PAUSED && c->in_off == c->body_end
			: c->body_left == 0))
		c->body_done = true;
	return progress;
}

/* Reads more of the body from the client once what was read is sent. */
static int read_body(struct hcl *c)
{
	if (c->body_done || c->in_off < c->in_len)
		return 0;
	ssize_t n = hproxy__client_read(c);
	if (n > 0)
		return 1;
	if (n == -EAGAIN)
		return 0;
	hproxy__client_close(c); /* the client left in the middle of its body */
	return -1;
}

/* ---- the response's bytes ---- */

static int read_response(struct hcl *c)
{
	struct hup *u = c->up;
	if (u->rb_off < u->rb_len || u->resp_done || !u->rd)
		return 0;
	ssize_t n = recv(u->fd, u->rb, HP_RESP_CHUNK, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		u->rd = errno == EINTR;
		return 0;
	}
	/* A kept-alive connection is in delayed-ACK mode; an upstream that writes a response in
	 * two pieces (headers, then body: Python's http.server) has its second piece held by
	 * Nagle until our ACK comes — 40 ms a request. Ask for a quick ACK after every read (it
	 * is not sticky; HAProxy does the same). */
	if (n > 0) {
		int one = 1;
		setsockopt(u->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
	if (n <= 0) {
		u->eof = true;
		if (u->got_bytes) /* the end of a response delimited by the close */
			http_parser_execute(&u->rp, &resp_settings, NULL, 0);
		if (!u->resp_done) {
			up_failed(c);
			return -1;
		}
		return 1;
	}
	if ((size_t)n < HP_RESP_CHUNK)
		u->rd = u->hup;
	u->got_bytes = true;
	u->rb_off = 0;
	u->rb_len = (size_t)n;
	size_t m = http_parser_execute(&u->rp, &resp_settings, u->rb, (size_t)n);
	enum http_errno er = HTTP_PARSER_ERRNO(&u->rp);
	if (er == HPE_PAUSED) {
		if (u->status != 101 && m < (size_t)n) {
			u->rb_len = m; /* bytes after the response: not for this client */
			u->junk = true;
		}
	} else if (er != HPE_OK || m != (size_t)n) {
		if (c->resp_started) {
			hproxy__client_close(c);
		} else {
			if (c->label >= 0) {
				pthread_mutex_lock(&c->lp->mu);
				c->lp->labels[c->label].total.parse_errors++;
				pthread_mutex_unlock(&c->lp->mu);
			}
			hproxy__client_answer(c, 502, "the upstream sent a malformed response");
		}
		return -1;
	}
	return 1;
}

static int write_response(struct hcl *c)
{
	struct hup *u = c->up;
	int progress = 0;
	while (u->rb_off < u->rb_len && c->wr) {
		ssize_t w = send(c->fd, u->rb + u->rb_off, u->rb_len - u->rb_off, MSG_NOSIGNAL);
		if (w > 0) {
			if ((size_t)w < u->rb_len - u->rb_off)
				c->wr = false;
			u->rb_off += (size_t)w;
			c->resp_started = true;
			progress = 1;
		} else if (w < 0 && errno == EAGAIN) {
			c->wr = false;
		} else if (!(w < 0 && errno == EINTR)) {
			hproxy__client_close(c);
			return -1;
		}
	}
	return progress;
}

/* The response is out: back to the next head, or close. */
static void finish(struct hcl *c)
{
	struct hloop *lp = c->lp;
	struct hup *u = c->up;
	if (!c->counted) {
		hproxy__count(lp, c->label, u->status, (time_mono_ns() - c->t0) / 1000);
		hproxy__flight(c, -1);
		c->counted = true;
	}
	if (u->status == 101) {
		c->state = CS_TUNNEL;
		c->up_shut = c->cl_shut = false;
		u->rb_off = u->rb_len = 0;
		hproxy__timer_arm(lp, &c->tm, HT_IDLE);
		return;
	}
	bool keep = u->keep && c->body_done;
	if (keep && !u->junk && !u->eof)
		pool_put(lp, u);
	else
		hproxy__up_close(lp, u);
	hproxy__set_unref(c->set);
	c->set = NULL;
	if (!keep || c->close_after) { /* lingering close: the client reads all, then EOF */
		buf_reset(&c->ans);
		c->ans_sent = 0;
		c->ans_shut = false;
		c->state = CS_ANSWER;
		hproxy__timer_arm(lp, &c->tm, HT_WRITE);
		return;
	}
	c->state = CS_HEAD;
	c->head_started = c->in_len > c->in_off; /* a pipelined head already started */
	hproxy__timer_arm(lp, &c->tm, c->head_started ? HT_HEAD : HT_IDLE);
}

bool hproxy__req_step(struct hcl *c)
{
	struct hup *u = c->up;
	int r, progress = 0;

	if (c->state == CS_CONNECT) {
		int err = 0;
		socklen_t sl = sizeof err;
		if (!u->wr)
			return false;
		if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
			connect_failed(c, "no upstream accepted the connection");
			return true;
		}
		u->connecting = false;
		net_set_nodelay(u->fd);
		c->state = CS_REQ;
	}
	if ((r = send_request(c)) < 0 || (progress |= r, (r = read_body(c)) < 0))
		return !c->dead;
	progress |= r;
	if ((r = read_response(c)) < 0)
		return !c->dead;
	progress |= r;
	if (u->resp_done && !c->counted) { /* counted before the client can see the end */
		hproxy__count(c->lp, c->label, u->status, (time_mono_ns() - c->t0) / 1000);
		hproxy__flight(c, -1);
		c->counted = true;
	}
	if ((r = write_response(c)) < 0)
		return false;
	progress |= r;
	if (u->resp_done && u->rb_off == u->rb_len) {
		finish(c);
		return true;
	}
	if (progress)
		hproxy__timer_arm(c->lp, &c->tm, HT_UPSTREAM);
	return progress != 0;
}

/* ---- after a 101: bytes both ways ---- */

static int pump(int from, bool *rd, bool hup, bool *eof, char *b, size_t cap, size_t *off,
		size_t *len)
{
	if (*off < *len || *eof || !*rd)
		return 0;
	ssize_t n = recv(from, b, cap, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		*rd = errno == EINTR;
		return 0;
	}
	*off = 0;
	*len = n > 0 ? (size_t)n : 0;
	if (n <= 0)
		*eof = true;
	else if ((size_t)n < cap)
		*rd = hup;
	return 1;
}

static int flush(int to, bool *wr, const char *b, size_t *off, size_t len)
{
	int progress = 0;
	while (*off < len && *wr) {
		ssize_t w = send(to, b + *off, len - *off, MSG_NOSIGNAL);
		if (w > 0) {
			*off += (size_t)w;
			progress = 1;
		} else if (w < 0 && errno == EAGAIN) {
			*wr = false;
		} else if (!(w < 0 && errno == EINTR)) {
			return -1;
		}
	}
	return progress;
}

bool hproxy__tunnel_step(struct hcl *c)
{
	struct hup *u = c->up;
	int p = 0, r;
	if (!u) {
		hproxy__client_close(c);
		return false;
	}
	if ((r = flush(u->fd, &u->wr, c->in, &c->in_off, c->in_len)) < 0)
		goto cut;
	p |= r;
	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
		p |= pump(c->fd, &c->rd, c->hup, &c->eof, c->in, c->in_cap, &c->in_off, &c->in_len);
	}
	if ((r = flush(c->fd, &c->wr, u->rb, &u->rb_off, u->rb_len)) < 0)
		goto cut;
	p |= r;
	p |= pump(u->fd, &u->rd, u->hup, &u->eof, u->rb, HP_RESP_CHUNK, &u->rb_off, &u->rb_len);
	if (c->eof && c->in_off == c->in_len && !c->up_shut) {
		shutdown(u->fd, SHUT_WR);
		c->up_shut = true;
	}
	if (u->eof && u->rb_off == u->rb_len && !c->cl_shut) {
		shutdown(c->fd, SHUT_WR);
		c->cl_shut = true;
	}
	if (c->up_shut && c->cl_shut) {
		hproxy__client_close(c);
		return false;
	}
	if (p)
		hproxy__timer_arm(c->lp, &c->tm, HT_IDLE);
	return p != 0;
cut:
	hproxy__client_close(c);
	return false;
}
