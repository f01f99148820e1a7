/* proxy conn: one proxied connection — accept, non-blocking connect (round-robin, skipping
 * upstreams that refuse), and the two links' data paths: splice(2) through a pipe when no toxic
 * or protocol module needs the bytes, else read into events that run through the toxic chain.
 * Half-close is propagated with shutdown(SHUT_WR); RST from a peer is passed on as RST. */
#include "proxy/proxy-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READS_PER_EVENT 8 /* fairness between connections of one loop */

static void conn_update(struct loop *lp, struct conn *c);

static void link_init(struct conn *c, int dir)
{
	struct link *l = &c->link[dir];
	l->c = c;
	l->dir = dir;
	l->src = dir == PROXY_UPSTREAM ? 0 : 1;
	l->dst = 1 - l->src;
	l->pipe[0] = l->pipe[1] = -1;
	l->q.last_t = 0;
}

static void link_done(struct loop *lp, struct link *l)
{
	proxy__timer_stop(lp, &l->release);
	proxy__timer_stop(lp, &l->idle);
	proxy__evq_clear(&l->q);
	free(l->stages);
	l->stages = NULL;
	if (l->pipe[0] >= 0) {
		close(l->pipe[0]);
		close(l->pipe[1]);
	}
}

void proxy__conn_close(struct loop *lp, struct conn *c, bool rst)
{
	struct lproxy *p = c->p;
	if (c->dead)
		return;
	c->dead = true;
	for (int s = 0; s < 2; s++) {
		if (c->fd[s] < 0)
			continue;
		if (rst || c->linger0) {
			struct linger lg = { 1, 0 };
			setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		/* explicitly out of the epoll set: close() alone does not remove it while a forked
		 * child (the agent spawns instances) still holds the descriptor until its exec, and
		 * its events would then name this freed connection */
		if (c->registered[s])
			epoll_ctl(lp->ep, EPOLL_CTL_DEL, c->fd[s], NULL);
		close(c->fd[s]);
		c->fd[s] = -1;
	}
	link_done(lp, &c->link[0]);
	link_done(lp, &c->link[1]);
	proxy__timer_stop(lp, &c->tm);
	if (c->proto_state && p->proto.conn_close)
		p->proto.conn_close(c->proto_state);
	if (c->state == CONN_OPEN) {
		p->st.conns_active--;
		proxy__label_add(p, c->ups->v[c->up_ent].label, 1, (uint64_t)-1);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->n_conns--;
	proxy__fd_put(PROXY_FDS_PER_CONN);
	proxy__upset_unref(c->ups);
	c->ups = NULL;
	c->grave_next = lp->grave;
	lp->grave = c;
}

void proxy__reap(struct loop *lp)
{
	while (lp->grave) {
		struct conn *c = lp->grave;
		lp->grave = c->grave_next;
		free(c);
	}
}

static void tm_fire(struct loop *lp, struct timer *t)
{
	struct conn *c = container_of(t, struct conn, tm);
	proxy__conn_close(lp, c, false); /* connect timeout or drain deadline */
}

static void release_fire(struct loop *lp, struct timer *t)
{
	struct link *l = container_of(t, struct link, release);
	conn_update(lp, l->c);
}

static void idle_fire(struct loop *lp, struct timer *t)
{
	struct link *l = container_of(t, struct link, idle);
	int64_t d = proxy__idle_deadline(l);
	if (d != TIME_INF && d > time_mono_ns()) {
		proxy__timer_arm(lp, t, d);
		return;
	}
	if (d != TIME_INF)
		proxy__conn_close(lp, l->c, false);
}

static bool chain_has_reset(const struct lproxy *p)
{
	for (int d = 0; d < 2; d++)
		for (size_t i = 0; i < p->n_chain[d]; i++)
			if (p->chain[d][i].type == TOXIC_RESET_PEER)
				return true;
	return false;
}

void proxy__conn_set_chain(struct loop *lp, struct conn *c, int dir)
{
	struct link *l = &c->link[dir];
	bool close_it = false;
	if (c->state != CONN_OPEN)
		return; /* it takes the chain when it opens */
	proxy__stages_build(lp, l, c->p->chain[dir], c->p->n_chain[dir], time_mono_ns(), &close_it);
	if (close_it) {
		proxy__conn_close(lp, c, false);
		return;
	}
	proxy__timer_arm(lp, &l->idle, proxy__idle_deadline(l));
	conn_update(lp, c);
}

/* ---- connect ---- */

static void conn_open(struct loop *lp, struct conn *c)
{
	struct lproxy *p = c->p;
	int64_t now = time_mono_ns();
	bool cl = false;

	c->state = CONN_OPEN;
	proxy__timer_stop(lp, &c->tm);
	net_set_nodelay(c->fd[0]);
	net_set_nodelay(c->fd[1]);
	c->linger0 = chain_has_reset(p); /* Toxiproxy sets linger only at link start */
	p->st.conns_active++;
	proxy__label_add(p, c->ups->v[c->up_ent].label, 0, 1);
	proxy__label_add(p, c->ups->v[c->up_ent].label, 1, 1);
	for (int d = 0; d < 2; d++) {
		proxy__stages_build(lp, &c->link[d], p->chain[d], p->n_chain[d], now, &cl);
		proxy__timer_arm(lp, &c->link[d].idle, proxy__idle_deadline(&c->link[d]));
	}
	int lb = c->ups->v[c->up_ent].label;
	if (p->has_proto && p->proto.conn_open)
		c->proto_state = p->proto.conn_open(p->proto.mod, lb >= 0 ? p->labels[lb].name : "");
	if (c->ups != p->ups) /* the set changed while connecting: drain like the others */
		proxy__timer_arm(lp, &c->tm, now + lp->eng->o.drain_timeout_ms * 1000000);
}

/* Tries the next upstream address; closes the client when none is left. */
static void conn_try_next(struct loop *lp, struct conn *c)
{
	struct upset *u = c->ups;
	if (c->fd[1] >= 0) {
		close(c->fd[1]);
		c->fd[1] = -1;
		c->registered[1] = false;
		c->interest[1] = 0;
	}
	while (u && c->up_tries < u->n) {
		struct upstream_ent *ent = &u->v[c->up_ent];
		if (c->up_addr < ent->n_addrs) {
			int fd = net_connect_start(&ent->addrs[c->up_addr++]);
			if (fd >= 0) {
				c->fd[1] = fd;
				proxy__timer_arm(lp, &c->tm,
						 time_mono_ns() + lp->eng->o.connect_timeout_ms * 1000000);
				conn_update(lp, c);
				return;
			}
			continue;
		}
		proxy__label_add(c->p, ent->label, 2, 1);
		c->up_tries++;
		c->up_ent = (c->up_ent + 1) % u->n;
		c->up_addr = 0;
	}
	/* accepted, then closed: what a Toxiproxy client sees when the upstream is down */
	proxy__conn_close(lp, c, false);
}

static void conn_connected(struct loop *lp, struct conn *c)
{
	int er = 0;
	socklen_t len = sizeof er;
	if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &er, &len) < 0)
		er = errno;
	if (er) {
		conn_try_next(lp, c);
		return;
	}
	conn_open(lp, c);
	conn_update(lp, c);
}

void proxy__accept(struct loop *lp, struct lproxy *p)
{
	for (int i = 0; i < 64; i++) {
		/* the process's descriptor budget first: at it, the listener rests like on EMFILE */
		int fd = proxy__fd_take(PROXY_FDS_PER_CONN)
			     ? accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
			     : (errno = EMFILE, -2);
		if (fd < 0) {
			if (fd == -1)
				proxy__fd_put(PROXY_FDS_PER_CONN);
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* out of descriptors: a level-triggered listener would spin; pause it */
				epoll_ctl(lp->ep, EPOLL_CTL_DEL, p->lfd, NULL);
				proxy__timer_arm(lp, &p->pause, time_mono_ns() + 100 * 1000000LL);
			}
			return;
		}
		if (p->n_conns >= lp->eng->o.max_conns || !p->ups || p->ups->n == 0) {
			p->st.conns_refused_limit += p->n_conns >= lp->eng->o.max_conns;
			close(fd);
			proxy__fd_put(PROXY_FDS_PER_CONN);
			continue;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			proxy__fd_put(PROXY_FDS_PER_CONN);
			continue;
		}
		c->p = p;
		c->ups = p->ups;
		c->ups->refs++;
		c->up_ent = c->ups->rr++ % c->ups->n;
		c->fd[0] = fd;
		c->fd[1] = -1;
		for (int s = 0; s < 2; s++)
			c->tag[s] = (struct ep_tag){ .kind = TAG_CONN, .side = s, .ptr = c };
		link_init(c, PROXY_UPSTREAM);
		link_init(c, PROXY_DOWNSTREAM);
		for (int d = 0; d < 2; d++) {
			proxy__timer_init(&c->link[d].release, release_fire);
			proxy__timer_init(&c->link[d].idle, idle_fire);
		}
		proxy__timer_init(&c->tm, tm_fire);
		c->next = p->conns;
		if (p->conns)
			p->conns->prev = c;
		p->conns = c;
		p->n_conns++;
		p->st.conns_total++;
		conn_try_next(lp, c);
	}
}

/* ---- data path ---- */

static bool link_passthrough(struct loop *lp, const struct link *l)
{
	return !l->any_active && !l->q.head && !l->c->p->has_proto && !lp->eng->o.no_splice;
}

static void conn_abort(struct loop *lp, struct conn *c, int er);

/* An error on the upstream's socket (side 1): a reset counts against its label. */
static void conn_abort_side(struct loop *lp, struct conn *c, int side, int er)
{
	if (side == 1 && er == ECONNRESET)
		proxy__label_add(c->p, c->ups->v[c->up_ent].label, 5, 1);
	conn_abort(lp, c, er);
}

static void conn_abort(struct loop *lp, struct conn *c, int er)
{
	/* a reset from one peer is passed on as a reset; other errors close */
	proxy__conn_close(lp, c, er == ECONNRESET || er == EPIPE);
}

static void count_bytes(struct link *l, size_t n)
{
	struct conn *c = l->c;
	if (l->dir == PROXY_UPSTREAM)
		c->p->st.bytes_up += n;
	else
		c->p->st.bytes_down += n;
	proxy__label_add(c->p, c->ups->v[c->up_ent].label, l->dir == PROXY_UPSTREAM ? 3 : 4, n);
}

static void count_sent(struct link *l, size_t n)
{
	if (l->dir == PROXY_UPSTREAM)
		l->c->p->st.bytes_sent_up += n;
	else
		l->c->p->st.bytes_sent_down += n;
}

/* Writes what is due. Returns false if the connection closed. */
static bool link_flush(struct loop *lp, struct link *l)
{
	struct conn *c = l->c;
	int dfd = c->fd[l->dst];

	l->want_out = false;
	while (l->pipe_bytes) {
		ssize_t n = splice(l->pipe[0], NULL, dfd, NULL, l->pipe_bytes,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n > 0) {
			l->pipe_bytes -= (size_t)n;
			count_sent(l, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			l->want_out = true;
			return true;
		}
		conn_abort(lp, c, n < 0 ? errno : EPIPE);
		return false;
	}
	int64_t now = 0;
	while (l->q.head) {
		struct ev *e = l->q.head;
		if (e->t > (now ? now : (now = time_mono_ns()))) {
			now = time_mono_ns();
			if (e->t > now) {
				proxy__timer_arm(lp, &l->release, e->t);
				return true;
			}
		}
		if (e->kind == EV_DATA) {
			while (e->off < e->len) {
				ssize_t n = send(dfd, e->data + e->off, e->len - e->off, MSG_NOSIGNAL);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && errno == EAGAIN) {
					l->want_out = true;
					return true;
				}
				if (n <= 0) {
					conn_abort(lp, c, n < 0 ? errno : EPIPE);
					return false;
				}
				e->off += (uint32_t)n;
				l->q.bytes -= (size_t)n;
				count_sent(l, (size_t)n);
			}
		} else if (e->kind == EV_EOF) {
			shutdown(dfd, SHUT_WR);
			l->dst_shut = true;
		} else {
			proxy__conn_close(lp, c, false);
			return false;
		}
		l->q.head = e->next;
		if (!l->q.head)
			l->q.tail = NULL;
		free(e);
	}
	proxy__timer_stop(lp, &l->release);
	return true;
}

static bool link_read(struct loop *lp, struct link *l)
{
	struct conn *c = l->c;
	int sfd = c->fd[l->src];

	for (int i = 0; i < READS_PER_EVENT && !l->src_eof; i++) {
		if (l->q.bytes >= lp->eng->o.max_buffered || l->pipe_bytes)
			return true;
		ssize_t n;
		if (link_passthrough(lp, l)) {
			if (l->pipe[0] < 0) {
				if (pipe2(l->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
					l->pipe[0] = l->pipe[1] = -1;
					conn_abort(lp, c, errno);
					return false;
				}
				/* bigger pipes, fewer splices; the default stays if the limit says no */
				fcntl(l->pipe[1], F_SETPIPE_SZ, PROXY_PIPE_SIZE);
			}
			n = splice(sfd, NULL, l->pipe[1], NULL, PROXY_PIPE_SIZE,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				l->pipe_bytes += (size_t)n;
				count_bytes(l, (size_t)n);
				if (!link_flush(lp, l))
					return false;
				continue;
			}
		} else {
			n = recv(sfd, lp->rbuf, PROXY_CHUNK, 0);
			if (n > 0) {
				count_bytes(l, (size_t)n);
				if (c->proto_state &&
				    c->p->proto.on_bytes(c->proto_state, l->dir, lp->rbuf, (size_t)n) < 0) {
					proxy__conn_close(lp, c, false);
					return false;
				}
				int64_t now = time_mono_ns();
				struct ev *e = proxy__ev_new(EV_DATA, lp->rbuf, (size_t)n, now);
				if (!e) {
					conn_abort(lp, c, ENOMEM);
					return false;
				}
				proxy__toxics_run(lp, l, e, now);
				if (!link_flush(lp, l))
					return false;
				continue;
			}
		}
		if (n == 0) {
			int64_t now = time_mono_ns();
			struct ev *e = proxy__ev_new(EV_EOF, NULL, 0, now);
			l->src_eof = true;
			if (!e) {
				conn_abort(lp, c, ENOMEM);
				return false;
			}
			proxy__toxics_run(lp, l, e, now);
			return link_flush(lp, l);
		}
		if (errno == EAGAIN || errno == EINTR)
			return true;
		conn_abort_side(lp, c, l->src, errno);
		return false;
	}
	return true;
}

static void conn_update(struct loop *lp, struct conn *c)
{
	uint32_t want[2] = { 0, 0 };

	if (c->dead)
		return;
	if (c->state == CONN_CONNECTING) {
		want[1] = EPOLLOUT;
	} else {
		for (int d = 0; d < 2; d++) {
			struct link *l = &c->link[d];
			if (!link_flush(lp, l))
				return;
			if (!l->src_eof && l->q.bytes < lp->eng->o.max_buffered && !l->pipe_bytes)
				want[l->src] |= EPOLLIN;
			if (l->want_out)
				want[l->dst] |= EPOLLOUT;
		}
		if (c->link[0].dst_shut && c->link[1].dst_shut) {
			proxy__conn_close(lp, c, false);
			return;
		}
	}
	for (int s = 0; s < 2; s++)
		if (c->fd[s] >= 0)
			proxy__ep_set(lp, c->fd[s], &c->tag[s], want[s], &c->registered[s],
				      &c->interest[s]);
}

void proxy__conn_event(struct loop *lp, struct conn *c, int side, uint32_t events)
{
	if (c->state == CONN_CONNECTING) {
		if (side == 1)
			conn_connected(lp, c);
		else if (events & (EPOLLERR | EPOLLHUP))
			proxy__conn_close(lp, c, false);
		return;
	}
	if (events & EPOLLERR) {
		int er = 0;
		socklen_t len = sizeof er;
		getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &er, &len);
		conn_abort_side(lp, c, side, er ? er : ECONNRESET);
		return;
	}
	struct link *rd = &c->link[side == 0 ? PROXY_UPSTREAM : PROXY_DOWNSTREAM];
	struct link *wr = &c->link[side == 0 ? PROXY_DOWNSTREAM : PROXY_UPSTREAM];
	if ((events & EPOLLOUT) && !link_flush(lp, wr))
		return;
	if ((events & (EPOLLIN | EPOLLHUP)) && !link_read(lp, rd))
		return;
	conn_update(lp, c);
}
