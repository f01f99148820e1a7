/* hproxy conn: the client side of the HTTP reverse proxy — accepting, reading and checking
 * request heads (limits, stop, empty set), the answers it makes itself (written, then a
 * lingering close), client timeouts and closing. It hands a parsed request to hproxy-up.c and
 * never touches an upstream socket itself. */
#include "proxy/hproxy-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_MAX (1 << 20) /* bytes discarded after our own answer before closing anyway */

static void client_ip(const struct sockaddr_storage *ss, char *out, size_t n)
{
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)n);
		return;
	}
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a6))
		inet_ntop(AF_INET, &a6->s6_addr[12], out, (socklen_t)n);
	else
		inet_ntop(AF_INET6, a6, out, (socklen_t)n);
}

void hproxy__accept(struct hloop *lp)
{
	const struct hproxy_opts *o = &lp->h->o;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		/* the process's descriptor budget first: at it, the listener rests like on EMFILE */
		int fd = proxy__fd_take(PROXY_FDS_PER_CONN)
			     ? accept4(lp->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC)
			     : (errno = EMFILE, -2);
		if (fd == -1)
			proxy__fd_put(PROXY_FDS_PER_CONN);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* the listener stays readable: rest it, or the loop would spin */
				epoll_ctl(lp->ep, EPOLL_CTL_DEL, lp->lfd, NULL);
				lp->accept_at = time_mono_ns() + 100 * 1000000LL;
			}
			return;
		}
		struct hcl *c = calloc(1, sizeof *c);
		char *in = malloc(HP_IN_CHUNK);
		if (lp->n_clients >= o->max_conns || !c || !in) {
			free(c);
			free(in);
			close(fd);
			proxy__fd_put(PROXY_FDS_PER_CONN);
			continue;
		}
		c->tag = (struct hp_tag){ TAG_HP_CLIENT, c };
		c->lp = lp;
		c->fd = fd;
		c->in = in;
		c->in_cap = HP_IN_CHUNK;
		c->state = CS_HEAD;
		c->label = -1;
		c->fl = -1;
		c->tm.kind = HT_NONE;
		client_ip(&ss, c->ip, sizeof c->ip);
		buf_init(&c->head, o->max_header_bytes + 1024);
		buf_init(&c->ans, HP_ERR_MAX);
		net_set_nodelay(fd);
		c->next = lp->clients;
		if (lp->clients)
			lp->clients->prev = c;
		lp->clients = c;
		lp->n_clients++;
		c->head_started = true; /* a new connection owes its first head within the limit */
		hproxy__timer_arm(lp, &c->tm, HT_HEAD);
		hproxy__ep_add(lp, fd, &c->tag);
	}
}

void hproxy__client_close(struct hcl *c)
{
	struct hloop *lp = c->lp;
	if (c->dead)
		return;
	c->dead = true;
	if (c->queued) { /* unlink from the run queue */
		struct hcl **pp = &lp->runq, *prev = NULL;
		while (*pp != c) {
			prev = *pp;
			pp = &(*pp)->rq_next;
		}
		*pp = c->rq_next;
		if (lp->runq_tail == c)
			lp->runq_tail = prev;
		c->queued = false;
	}
	hproxy__timer_stop(&c->tm);
	hproxy__flight(c, -1);
	if (c->up)
		hproxy__up_close(lp, c->up);
	hproxy__set_unref(c->set);
	c->set = NULL;
	/* out of the epoll set first: close() alone leaves it registered while a forked child
	 * (the agent spawns instances) still holds the descriptor, and its events would name
	 * this freed client */
	epoll_ctl(lp->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		lp->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	lp->n_clients--;
	proxy__fd_put(PROXY_FDS_PER_CONN);
	c->next = lp->dead_cl;
	lp->dead_cl = c;
}

ssize_t hproxy__client_read(struct hcl *c)
{
	const struct hproxy_opts *o = &c->lp->h->o;
	if (c->eof)
		return 0;
	if (!c->rd)
		return -EAGAIN;
	if (c->in_len == c->in_cap && c->in_off > 0) {
		size_t sh = c->in_off;
		memmove(c->in, c->in + sh, c->in_len - sh);
		c->in_len -= sh;
		c->in_off = 0;
		if (c->body_start < sh)
			c->replayable = false;
		c->body_start = c->body_start > sh ? c->body_start - sh : 0;
		c->cp_fed = c->cp_fed > sh ? c->cp_fed - sh : 0;
		c->body_end = c->body_end > sh ? c->body_end - sh : 0;
	}
	if (c->in_len == c->in_cap && c->state == CS_HEAD && c->in_cap <= o->max_header_bytes) {
		size_t nc = c->in_cap * 2;
		if (c->lp->in_grown + (nc - c->in_cap) > HP_LOOP_GROW_MAX)
			return -ENOBUFS; /* the loop's room for large heads is taken */
		char *np = realloc(c->in, nc);
		if (np) {
			c->lp->in_grown += nc - c->in_cap;
			c->in = np;
			c->in_cap = nc;
		}
	}
	if (c->in_len == c->in_cap)
		return -EAGAIN;
	size_t want = c->in_cap - c->in_len;
	ssize_t n = recv(c->fd, c->in + c->in_len, want, 0);
	if (n > 0) {
		c->in_len += (size_t)n;
		if ((size_t)n < want)
			c->rd = c->hup; /* drained for now: the next arrival is a new edge */
		return n;
	}
	if (n == 0) {
		c->eof = true;
		c->rd = false;
		return 0;
	}
	if (errno == EAGAIN || errno == EINTR) {
		c->rd = errno == EINTR;
		return -EAGAIN;
	}
	c->eof = true;
	return -errno;
}

void hproxy__client_answer(struct hcl *c, int status, const char *message)
{
	if (c->label >= 0 && !c->counted) {
		hproxy__count(c->lp, c->label, status, (time_mono_ns() - c->t0) / 1000);
		hproxy__flight(c, -1);
		c->counted = true;
	}
	if (c->up)
		hproxy__up_close(c->lp, c->up);
	hproxy__answer(&c->ans, status, message);
	c->ans_sent = 0;
	c->state = CS_ANSWER;
	hproxy__timer_arm(c->lp, &c->tm, HT_WRITE);
}

/* Writes our answer; then reads and drops what the client still sends until it closes, so
 * the answer is not lost to a reset (a client mid-way through a large body). */
static bool answer_step(struct hcl *c)
{
	if (!c->ans_shut) {
		while (c->ans_sent < c->ans.len && c->wr) {
			ssize_t n = send(c->fd, c->ans.data + c->ans_sent, c->ans.len - c->ans_sent,
					 MSG_NOSIGNAL);
			if (n > 0) {
				c->ans_sent += (size_t)n;
			} else if (n < 0 && errno == EAGAIN) {
				c->wr = false;
			} else {
				hproxy__client_close(c);
				return false;
			}
		}
		if (c->ans_sent < c->ans.len)
			return false;
		shutdown(c->fd, SHUT_WR);
		c->ans_shut = true;
		c->in_off = c->in_len = 0;
	}
	size_t dropped = 0;
	for (;;) {
		c->in_off = c->in_len = 0;
		ssize_t n = hproxy__client_read(c);
		if (n == -EAGAIN)
			break;
		dropped += n > 0 ? (size_t)n : 0;
		if (n <= 0 || dropped > LINGER_MAX) {
			hproxy__client_close(c);
			return false;
		}
	}
	return false;
}

static bool idempotent(int m)
{
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_PUT || m == HTTP_DELETE ||
	       m == HTTP_OPTIONS || m == HTTP_TRACE;
}

/* Reads and checks the next request head; a complete one is routed. */
static bool head_step(struct hcl *c)
{
	struct hloop *lp = c->lp;
	const struct hproxy_opts *o = &lp->h->o;
	size_t avail = c->in_len - c->in_off;
	ssize_t n = -EAGAIN;

	if (!avail && c->in_cap > HP_IN_CHUNK) {
		/* between requests: a buffer grown for a large head goes back to its first size */
		char *np = realloc(c->in, HP_IN_CHUNK);
		if (np) {
			lp->in_grown -= c->in_cap - HP_IN_CHUNK;
			hproxy__in_freed(lp, c->in_cap - HP_IN_CHUNK);
			c->in = np;
			c->in_cap = HP_IN_CHUNK;
			c->in_off = c->in_len = 0;
			c->scan = 0;
		}
	}
	if (avail <= c->scan) {
		n = hproxy__client_read(c);
		avail = c->in_len - c->in_off;
	}
	if (n == -ENOBUFS) {
		hproxy__client_answer(c, 503, "too many large request heads at once; retry");
		return true;
	}
	if (avail <= c->scan && avail < o->max_header_bytes) {
		if (n != -EAGAIN)
			hproxy__client_close(c); /* gone between requests, or mid-head */
		return false;
	}
	if (!c->head_started) {
		c->head_started = true;
		hproxy__timer_arm(lp, &c->tm, HT_HEAD);
	}
	buf_reset(&c->head);
	int r = hproxy_parse_head(c->in + c->in_off, avail, o->max_header_bytes,
				  o->no_forwarded ? NULL : c->ip, &c->head, &c->info);
	if (r == 0) {
		c->scan = avail; /* parse again once more bytes came */
		if (c->eof)
			hproxy__client_close(c);
		return !c->dead && c->rd;
	}
	c->scan = 0;
	hproxy__flight(c, -1);
	c->label = -1;
	c->counted = false;
	c->resp_started = false;
	if (r < 0) {
		hproxy__client_answer(c, -r, r == -431 ? "request head too large" :
						      "malformed request");
		return true;
	}
	c->head_len = (size_t)r;
	c->body_start = c->in_off + (size_t)r;
	c->in_off = c->body_start;
	c->head_sent = 0;
	c->t0 = time_mono_ns();
	if (lp->stopped) {
		hproxy__client_answer(c, 503, "the proxy is stopped");
		return true;
	}
	if (o->max_body_bytes >= 0 && c->info.content_length > o->max_body_bytes) {
		hproxy__client_answer(c, 413, "request body too large");
		return true;
	}
	if (!lp->set || !lp->set->n) {
		hproxy__client_answer(c, 503, "no upstream");
		return true;
	}
	c->chunked = c->info.chunked && !c->info.upgrade;
	c->body_left = c->info.content_length > 0 && !c->info.upgrade ? c->info.content_length : 0;
	c->body_done = !c->chunked && c->body_left == 0;
	c->body_seen = 0;
	c->body_end = 0;
	c->cp_fed = c->body_start;
	c->replayable = c->body_done ||
			(idempotent(c->info.method) && !c->chunked &&
			 (int64_t)(c->in_len - c->body_start) >= c->body_left);
	c->retried = false;
	c->close_after = !c->info.keep_alive || lp->quitting;
	c->head_started = false;
	hproxy__route(c);
	return true;
}

void hproxy__client_run(struct hcl *c)
{
	for (int round = 0; round < 64 && !c->dead; round++) {
		bool more = false;
		switch (c->state) {
		case CS_HEAD:
			more = head_step(c);
			break;
		case CS_CONNECT:
		case CS_REQ:
			more = hproxy__req_step(c);
			break;
		case CS_TUNNEL:
			more = hproxy__tunnel_step(c);
			break;
		case CS_ANSWER:
			more = answer_step(c);
			break;
		}
		if (!more)
			return;
	}
	if (!c->dead && !c->queued) { /* its share is used up: the rest after the others */
		struct hloop *lp = c->lp;
		c->queued = true;
		c->rq_next = NULL;
		if (lp->runq_tail)
			lp->runq_tail->rq_next = c;
		else
			lp->runq = c;
		lp->runq_tail = c;
	}
}

void hproxy__client_event(struct hcl *c, uint32_t ev)
{
	if (c->dead)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rd = true;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->hup = true;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->wr = true;
	hproxy__client_run(c);
}

void hproxy__client_timeout(struct hcl *c)
{
	switch (c->state) {
	case CS_HEAD:
		if (c->in_len > c->in_off && !c->lp->quitting)
			hproxy__client_answer(c, 408, "request head not received in time");
		else
			hproxy__client_close(c); /* idle keep-alive or a silent connection */
		hproxy__client_run(c);
		break;
	case CS_CONNECT:
	case CS_REQ:
		hproxy__req_timeout(c);
		break;
	default:
		hproxy__client_close(c);
	}
}

void hproxy__apply_state(struct hloop *lp)
{
	for (struct hcl *c = lp->clients, *nx; c; c = nx) {
		nx = c->next;
		bool busy = c->state == CS_CONNECT || c->state == CS_REQ || c->state == CS_TUNNEL;
		if (lp->stopped && busy) {
			hproxy__client_close(c); /* emergency stop cuts requests in flight */
		} else if (lp->quitting && c->state == CS_HEAD && c->in_len == c->in_off) {
			hproxy__client_close(c); /* idle keep-alive connection */
		} else if (lp->quitting) {
			c->close_after = true;
		} else if (lp->stopped && c->state == CS_HEAD && c->in_len > c->in_off) {
			hproxy__client_run(c); /* a pipelined head waiting: answer it now */
		}
	}
}
