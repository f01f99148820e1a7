/* proxy loop: one epoll thread — its timer heap (one timerfd, ns precision), the command queue
 * fed through an eventfd, and the per-loop view of each proxy (listener, upstream set, chains,
 * counters). It never blocks: binding and name lookups happen in the caller's thread. */
#include "proxy/proxy-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ---- timers ---- */

void proxy__timer_init(struct timer *t, void (*fire)(struct loop *, struct timer *))
{
	t->at = TIME_INF;
	t->idx = SIZE_MAX;
	t->fire = fire;
}

static void heap_swap(struct loop *lp, size_t a, size_t b)
{
	struct timer *t = lp->heap[a];
	lp->heap[a] = lp->heap[b];
	lp->heap[b] = t;
	lp->heap[a]->idx = a;
	lp->heap[b]->idx = b;
}

static void heap_up(struct loop *lp, size_t i)
{
	while (i > 0 && lp->heap[(i - 1) / 2]->at > lp->heap[i]->at) {
		heap_swap(lp, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct loop *lp, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < lp->n_heap && lp->heap[l]->at < lp->heap[m]->at)
			m = l;
		if (r < lp->n_heap && lp->heap[r]->at < lp->heap[m]->at)
			m = r;
		if (m == i)
			return;
		heap_swap(lp, i, m);
		i = m;
	}
}

void proxy__timer_stop(struct loop *lp, struct timer *t)
{
	size_t i = t->idx;
	if (i == SIZE_MAX)
		return;
	lp->n_heap--;
	if (i != lp->n_heap) {
		lp->heap[i] = lp->heap[lp->n_heap];
		lp->heap[i]->idx = i;
		heap_up(lp, i);
		heap_down(lp, lp->heap[i]->idx);
	}
	t->idx = SIZE_MAX;
	t->at = TIME_INF;
}

void proxy__timer_arm(struct loop *lp, struct timer *t, int64_t at)
{
	if (at == TIME_INF) {
		proxy__timer_stop(lp, t);
		return;
	}
	if (t->idx != SIZE_MAX) {
		t->at = at;
		heap_up(lp, t->idx);
		heap_down(lp, t->idx);
		return;
	}
	if (lp->n_heap == lp->cap_heap) {
		size_t nc = lp->cap_heap ? 2 * lp->cap_heap : 64;
		struct timer **nh = realloc(lp->heap, nc * sizeof *nh);
		if (!nh)
			abort(); /* a timer that cannot be armed would hang a connection */
		lp->heap = nh;
		lp->cap_heap = nc;
	}
	t->at = at;
	t->idx = lp->n_heap;
	lp->heap[lp->n_heap++] = t;
	heap_up(lp, t->idx);
}

static void timers_run(struct loop *lp)
{
	int64_t now = time_mono_ns();
	while (lp->n_heap && lp->heap[0]->at <= now) {
		struct timer *t = lp->heap[0];
		proxy__timer_stop(lp, t);
		t->fire(lp, t);
	}
}

/* A sleeping thread can wake late (an idle vCPU halts and the host schedules it back; a busy
 * machine has other runnable tasks), by tens of microseconds typically and by milliseconds in
 * the tail. So a deadline is slept towards in one step up to TIMER_SPIN before it, and the
 * rest is spent polling epoll without sleeping (events keep being served meanwhile): the
 * thread is already running when the deadline comes. One sleep per release keeps the CPU cost
 * at TIMER_SPIN per deadline. That is what keeps a latency toxic's p99 within a millisecond on
 * a busy virtual machine; coarse_timers turns it off (one sleep straight to the deadline). */
#define TIMER_SPIN (250 * 1000LL)

static void tfd_rearm(struct loop *lp)
{
	int64_t at = lp->n_heap ? lp->heap[0]->at : 0;
	if (at && !lp->eng->o.coarse_timers) {
		at -= TIMER_SPIN;
		if (at <= time_mono_ns())
			at = 0; /* polling already: wait_timeout() says 0 */
	}
	if (at == lp->tfd_armed)
		return;
	struct itimerspec its = { 0 };
	if (at) {
		its.it_value.tv_sec = at / 1000000000;
		its.it_value.tv_nsec = at % 1000000000;
	}
	timerfd_settime(lp->tfd, TFD_TIMER_ABSTIME, &its, NULL);
	lp->tfd_armed = at;
}

/* epoll_wait's timeout: 0 (poll) while the next deadline is within TIMER_SPIN, else -1 (the
 * timerfd wakes the loop). */
static int wait_timeout(struct loop *lp)
{
	if (!lp->n_heap || lp->eng->o.coarse_timers)
		return -1;
	return lp->heap[0]->at - time_mono_ns() <= TIMER_SPIN ? 0 : -1;
}

/* ---- helpers ---- */

double proxy__rand01(struct loop *lp)
{
	uint64_t x = lp->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	lp->rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

void proxy__ep_set(struct loop *lp, int fd, struct ep_tag *tag, uint32_t want, bool *registered,
		   uint32_t *cur)
{
	struct epoll_event ev = { .events = want, .data.ptr = tag };
	if (want == 0) {
		if (*registered)
			epoll_ctl(lp->ep, EPOLL_CTL_DEL, fd, NULL);
		*registered = false;
	} else if (!*registered) {
		if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) == 0)
			*registered = true;
	} else if (want != *cur) {
		epoll_ctl(lp->ep, EPOLL_CTL_MOD, fd, &ev);
	}
	*cur = want;
}

struct lproxy *proxy__find(struct loop *lp, int64_t id)
{
	for (size_t i = 0; i < lp->n_px; i++)
		if (lp->px[i]->id == id)
			return lp->px[i];
	return NULL;
}

void proxy__upset_unref(struct upset *u)
{
	if (u && --u->refs == 0)
		free(u);
}

void proxy__label_add(struct lproxy *p, int label, int field, uint64_t n)
{
	if (label < 0 || label >= (int)ARRAY_SIZE(p->labels))
		return;
	struct proxy_label_stats *s = &p->labels[label].s;
	uint64_t *f[] = { &s->conns_total, &s->conns_active, &s->connect_failures, &s->bytes_up,
			  &s->bytes_down, &s->upstream_resets };
	*f[field] += n;
}

static int label_slot(struct lproxy *p, const char *name)
{
	int free_slot = -1, idle_slot = -1;
	for (size_t i = 0; i < ARRAY_SIZE(p->labels); i++) {
		if (p->labels[i].used && !strcmp(p->labels[i].name, name))
			return (int)i;
		if (free_slot < 0 && !p->labels[i].used)
			free_slot = (int)i;
		if (idle_slot < 0 && p->labels[i].used && p->labels[i].s.conns_active == 0)
			idle_slot = (int)i;
	}
	if (free_slot < 0) /* all taken: the counters of a label with no connection go */
		free_slot = idle_slot;
	if (free_slot < 0)
		return -1;
	memset(&p->labels[free_slot], 0, sizeof p->labels[free_slot]);
	p->labels[free_slot].used = true;
	snprintf(p->labels[free_slot].name, sizeof p->labels[free_slot].name, "%s", name);
	snprintf(p->labels[free_slot].s.label, sizeof p->labels[free_slot].s.label, "%s", name);
	return free_slot;
}

/* ---- commands ---- */

/* the loops hold dups of one listening socket: a connection wakes one of them, not all */
static uint32_t listen_events(const struct loop *lp)
{
	return EPOLLIN | (lp->eng->o.threads > 1 ? EPOLLEXCLUSIVE : 0);
}

static void listener_set(struct loop *lp, struct lproxy *p, int fd)
{
	bool reg = false;
	uint32_t cur = 0;
	p->lfd = fd;
	p->ltag = (struct ep_tag){ .kind = TAG_LISTEN, .ptr = p };
	proxy__ep_set(lp, fd, &p->ltag, listen_events(lp), &reg, &cur);
}

static void pause_fire(struct loop *lp, struct timer *t)
{
	struct lproxy *p = container_of(t, struct lproxy, pause);
	struct epoll_event ev = { .events = listen_events(lp), .data.ptr = &p->ltag };
	if (p->lfd >= 0)
		epoll_ctl(lp->ep, EPOLL_CTL_ADD, p->lfd, &ev);
}

static void close_all(struct loop *lp, struct lproxy *p)
{
	while (p->conns)
		proxy__conn_close(lp, p->conns, false);
}

static void take_upset(struct lproxy *p, struct cmd *c)
{
	for (size_t i = 0; i < c->ups->n; i++)
		c->ups->v[i].label = label_slot(p, c->labels[i]);
	proxy__upset_unref(p->ups);
	p->ups = c->ups;
	c->ups = NULL;
}

static void drain_old(struct loop *lp, struct lproxy *p)
{
	int64_t at = time_mono_ns() + lp->eng->o.drain_timeout_ms * 1000000;
	for (struct conn *c = p->conns; c; c = c->next)
		if (c->ups != p->ups && c->state == CONN_OPEN)
			proxy__timer_arm(lp, &c->tm, at);
}

static void cmd_run(struct loop *lp, struct cmd *c)
{
	struct lproxy *p = proxy__find(lp, c->id);

	switch (c->kind) {
	case CMD_ADD:
		if (p)
			break;
		p = calloc(1, sizeof *p);
		if (!p || (lp->n_px == lp->cap_px &&
			   !(lp->px = reallocarray(lp->px, lp->cap_px = lp->cap_px * 2 + 4, sizeof *lp->px))))
			abort(); /* the caller's state would silently diverge from the loop's */
		p->id = c->id;
		p->lfd = -1;
		proxy__timer_init(&p->pause, pause_fire);
		take_upset(p, c);
		lp->px[lp->n_px++] = p;
		if (c->fd >= 0)
			listener_set(lp, p, c->fd);
		c->fd = -1;
		break;
	case CMD_REMOVE:
	case CMD_DISABLE:
		if (!p)
			break;
		if (p->lfd >= 0) {
			epoll_ctl(lp->ep, EPOLL_CTL_DEL, p->lfd, NULL);
			close(p->lfd);
			p->lfd = -1;
		}
		proxy__timer_stop(lp, &p->pause);
		close_all(lp, p);
		if (c->kind == CMD_REMOVE) {
			for (size_t i = 0; i < lp->n_px; i++)
				if (lp->px[i] == p)
					lp->px[i] = lp->px[--lp->n_px];
			proxy__upset_unref(p->ups);
			free(p);
		}
		break;
	case CMD_ENABLE:
		if (p && p->lfd < 0 && c->fd >= 0) {
			listener_set(lp, p, c->fd);
			c->fd = -1;
		}
		break;
	case CMD_UPSTREAMS:
		if (!p)
			break;
		take_upset(p, c);
		drain_old(lp, p);
		break;
	case CMD_TOXICS:
		if (!p)
			break;
		memcpy(p->chain[c->dir], c->chain, c->n_chain * sizeof c->chain[0]);
		p->n_chain[c->dir] = c->n_chain;
		for (struct conn *cn = p->conns, *nx; cn; cn = nx) {
			nx = cn->next;
			proxy__conn_set_chain(lp, cn, c->dir);
		}
		break;
	case CMD_STATS:
		if (!p)
			break;
		*c->stats = p->st;
		c->stats->n_labels = 0;
		for (size_t i = 0; i < ARRAY_SIZE(p->labels); i++)
			if (p->labels[i].used)
				c->stats->labels[c->stats->n_labels++] = p->labels[i].s;
		break;
	case CMD_PROTO:
		if (p) {
			p->proto = c->proto;
			p->has_proto = c->proto.on_bytes != NULL;
		}
		break;
	case CMD_STOP:
		lp->stop = true;
		break;
	}
}

static void cmds_drain(struct loop *lp)
{
	uint64_t v;
	struct cmd *c;
	if (read(lp->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&lp->mu);
	c = lp->cq_head;
	lp->cq_head = lp->cq_tail = NULL;
	pthread_mutex_unlock(&lp->mu);
	while (c) {
		struct cmd *nx = c->next;
		cmd_run(lp, c);
		if (c->fd >= 0)
			close(c->fd);
		proxy__upset_unref(c->ups);
		struct cmd_done *d = c->done;
		free(c);
		if (d) {
			pthread_mutex_lock(&d->mu);
			if (--d->pending == 0)
				pthread_cond_broadcast(&d->cv);
			pthread_mutex_unlock(&d->mu);
		}
		c = nx;
	}
}

static void *loop_main(void *arg)
{
	struct loop *lp = arg;
	struct epoll_event evs[128];

	prctl(PR_SET_TIMERSLACK, 1UL); /* release times are the product: no 50 us slack */

	while (!lp->stop) {
		tfd_rearm(lp);
		int n = epoll_wait(lp->ep, evs, ARRAY_SIZE(evs), wait_timeout(lp));
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct ep_tag *tag = evs[i].data.ptr;
			switch (tag->kind) {
			case TAG_EVENT:
				cmds_drain(lp);
				break;
			case TAG_TIMERFD: {
				uint64_t v;
				if (read(lp->tfd, &v, sizeof v) < 0 && errno != EAGAIN)
					break;
				lp->tfd_armed = 0;
				break;
			}
			case TAG_LISTEN:
				proxy__accept(lp, tag->ptr);
				break;
			case TAG_CONN: {
				struct conn *c = tag->ptr;
				if (!c->dead)
					proxy__conn_event(lp, c, tag->side, evs[i].events);
				break;
			}
			}
		}
		timers_run(lp);
		proxy__reap(lp);
	}
	for (size_t i = 0; i < lp->n_px; i++) {
		struct lproxy *p = lp->px[i];
		if (p->lfd >= 0)
			close(p->lfd);
		close_all(lp, p);
		proxy__upset_unref(p->ups);
		free(p);
	}
	proxy__reap(lp);
	lp->n_px = 0;
	return NULL;
}

int proxy__loop_start(struct proxy_engine *eng, struct loop *lp, int idx, struct err *e)
{
	struct epoll_event ev = { .events = EPOLLIN };

	memset(lp, 0, sizeof *lp);
	lp->eng = eng;
	lp->idx = idx;
	lp->rng = (eng->o.seed ? eng->o.seed : (uint64_t)time_now_ns()) * 0x9E3779B97F4A7C15ULL +
		  (uint64_t)idx + 1;
	pthread_mutex_init(&lp->mu, NULL);
	lp->ep = epoll_create1(EPOLL_CLOEXEC);
	lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	lp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	lp->rbuf = malloc(PROXY_CHUNK);
	if (lp->ep < 0 || lp->evfd < 0 || lp->tfd < 0 || !lp->rbuf)
		goto fail;
	lp->evtag.kind = TAG_EVENT;
	lp->ttag.kind = TAG_TIMERFD;
	ev.data.ptr = &lp->evtag;
	epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->evfd, &ev);
	ev.data.ptr = &lp->ttag;
	epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->tfd, &ev);
	if (pthread_create(&lp->th, NULL, loop_main, lp) != 0)
		goto fail;
	return 0;
fail:
	if (lp->ep >= 0)
		close(lp->ep);
	if (lp->evfd >= 0)
		close(lp->evfd);
	if (lp->tfd >= 0)
		close(lp->tfd);
	free(lp->rbuf);
	lp->rbuf = NULL;
	return err_set(e, ENOMEM, "proxy: cannot start an event loop: %s", strerror(errno));
}

void proxy__loop_stop(struct loop *lp)
{
	pthread_join(lp->th, NULL);
	close(lp->ep);
	close(lp->evfd);
	close(lp->tfd);
	free(lp->rbuf);
	free(lp->px);
	free(lp->heap);
	pthread_mutex_destroy(&lp->mu);
}
