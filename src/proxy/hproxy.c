/* hproxy: the HTTP/1.1 reverse proxy's face and its loops — one epoll thread per loop, all
 * sharing one listening socket (never SO_REUSEPORT), timer lists, keep-alive pools, and the
 * hand-over of the upstream set and the stop flag from callers (under h->mu, announced through
 * an eventfd; callers wait until every loop has taken the change). Connections live in hproxy-conn.c and hproxy-up.c. */
#include "proxy/hproxy-internal.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

void hproxy__set_unref(struct hp_set *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		free(s);
}

/* ---- timers ---- */

void hproxy__timer_stop(struct hp_timer *t)
{
	if (t->kind == HT_NONE)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->kind = HT_NONE;
}

void hproxy__timer_arm(struct hloop *lp, struct hp_timer *t, int kind)
{
	hproxy__timer_stop(t);
	struct hp_timer *s = &lp->tl[kind];
	t->at = time_mono_ns() + lp->dur[kind];
	t->kind = kind;
	t->prev = s->prev;
	t->next = s;
	s->prev->next = t;
	s->prev = t;
}

static int next_timeout_ms(struct hloop *lp)
{
	int64_t at = INT64_MAX;
	for (int k = 0; k < HT__N; k++)
		if (lp->tl[k].next != &lp->tl[k] && lp->tl[k].next->at < at)
			at = lp->tl[k].next->at;
	if (lp->runq)
		return 0;
	if (lp->quitting && lp->quit_at < at)
		at = lp->quit_at;
	if (lp->accept_at && lp->accept_at < at)
		at = lp->accept_at;
	if (at == INT64_MAX)
		return -1;
	int64_t d = at - time_mono_ns();
	return d <= 0 ? 0 : (int)((d + 999999) / 1000000);
}

static void timers_run(struct hloop *lp)
{
	int64_t now = time_mono_ns();
	for (int k = 0; k < HT__N; k++) {
		struct hp_timer *s = &lp->tl[k];
		while (s->next != s && s->next->at <= now) {
			struct hp_timer *t = s->next;
			hproxy__timer_stop(t);
			hproxy__client_timeout(container_of(t, struct hcl, tm));
		}
	}
}

void hproxy__ep_add(struct hloop *lp, int fd, struct hp_tag *tag)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				  .data.ptr = tag };
	epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev);
}

/* ---- pools ---- */

struct hp_pool *hproxy__pool_get(struct hloop *lp, const char *key)
{
	for (size_t i = 0; i < lp->n_pools; i++)
		if (!strcmp(lp->pools[i]->key, key))
			return lp->pools[i];
	struct hp_pool *p = calloc(1, sizeof *p);
	struct hp_pool **np = reallocarray(lp->pools, lp->n_pools + 1, sizeof *np);
	if (!p || !np) {
		free(p);
		if (np)
			lp->pools = np;
		return NULL;
	}
	lp->pools = np;
	snprintf(p->key, sizeof p->key, "%s", key);
	lp->pools[lp->n_pools++] = p;
	return p;
}

/* Frees a pool that is out of the set and holds no connection. */
void hproxy__pool_release(struct hloop *lp, struct hp_pool *p)
{
	if (!p->stale || p->active || p->idle)
		return;
	for (size_t i = 0; i < lp->n_pools; i++)
		if (lp->pools[i] == p) {
			lp->pools[i] = lp->pools[--lp->n_pools];
			break;
		}
	free(p);
}

/* ---- taking changes from callers ---- */

static int take_set(struct hloop *lp, struct hp_set *set)
{
	size_t n = set ? set->n : 0;
	struct hp_pool **sp = calloc(n + 1, sizeof *sp);
	int *sl = calloc(n + 1, sizeof *sl);
	if (!sp || !sl) {
		free(sp);
		free(sl);
		return -ENOMEM;
	}
	hproxy__set_unref(lp->set);
	lp->set = set;
	for (size_t i = 0; i < lp->n_pools; i++)
		lp->pools[i]->stale = true;
	for (size_t i = 0; i < n; i++) {
		sp[i] = hproxy__pool_get(lp, set->v[i].key);
		if (sp[i])
			sp[i]->stale = false;
		sl[i] = hproxy__label_get(lp, set->v[i].label);
	}
	free(lp->set_pool);
	free(lp->set_label);
	lp->set_pool = sp;
	lp->set_label = sl;
	/* idle connections to upstreams that left the set go now */
	for (size_t i = lp->n_pools; i-- > 0;) {
		struct hp_pool *p = lp->pools[i];
		if (!p->stale)
			continue;
		while (p->idle)
			hproxy__up_close(lp, p->idle);
		hproxy__pool_release(lp, p);
	}
	return 0;
}

static void take_changes(struct hloop *lp)
{
	struct hproxy *h = lp->h;
	uint64_t v;
	if (read(lp->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&h->mu);
	uint64_t gen = h->gen;
	struct hp_set *set = h->set;
	bool set_changed = set != lp->set;
	if (gen == lp->gen) {
		pthread_mutex_unlock(&h->mu);
		return;
	}
	if (set_changed && set)
		atomic_fetch_add(&set->refs, 1);
	bool stopped = h->stopped, quitting = h->quitting;
	pthread_mutex_unlock(&h->mu);
	if (set_changed && take_set(lp, set) < 0)
		hproxy__set_unref(set); /* out of memory: keep the old set rather than half a one */
	bool state_changed = stopped != lp->stopped || quitting != lp->quitting;
	lp->stopped = stopped;
	if (quitting && !lp->quitting) {
		lp->quitting = true;
		lp->quit_at = time_mono_ns() + h->o.drain_timeout_ms * 1000000;
		if (lp->lfd >= 0) {
			epoll_ctl(lp->ep, EPOLL_CTL_DEL, lp->lfd, NULL);
			close(lp->lfd);
			lp->lfd = -1;
		}
	}
	if (state_changed)
		hproxy__apply_state(lp);
	pthread_mutex_lock(&h->mu);
	lp->gen = gen;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

void hproxy__in_freed(struct hloop *lp, size_t bytes)
{
	lp->in_freed += bytes;
	if (lp->in_freed >= HP_TRIM_AFTER) {
		/* heads that left: without this the loop's arena keeps their pages */
		malloc_trim(0);
		lp->in_freed = 0;
	}
}

static void reap(struct hloop *lp)
{
	while (lp->dead_cl) {
		struct hcl *c = lp->dead_cl;
		lp->dead_cl = c->next;
		if (c->in_cap > HP_IN_CHUNK)
			lp->in_grown -= c->in_cap - HP_IN_CHUNK;
		free(c->in);
		hproxy__in_freed(lp, c->in_cap);
		buf_done(&c->head);
		buf_done(&c->ans);
		free(c);
	}
	while (lp->dead_up) {
		struct hup *u = lp->dead_up;
		lp->dead_up = u->next;
		free(u->rb);
		free(u);
	}
}

static void *loop_main(void *arg)
{
	struct hloop *lp = arg;
	struct epoll_event evs[256];

	for (;;) {
		int n = epoll_wait(lp->ep, evs, ARRAY_SIZE(evs), next_timeout_ms(lp));
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct hp_tag *tag = evs[i].data.ptr;
			switch (tag->kind) {
			case TAG_HP_LISTEN:
				hproxy__accept(lp);
				break;
			case TAG_HP_EVENT:
				take_changes(lp);
				break;
			case TAG_HP_CLIENT:
				hproxy__client_event(tag->ptr, evs[i].events);
				break;
			case TAG_HP_UP:
				hproxy__up_event(lp, tag->ptr, evs[i].events);
				break;
			}
		}
		for (struct hcl *q = lp->runq, *end = lp->runq_tail; q;) {
			struct hcl *c = q; /* one pass: clients queued again wait for the next */
			bool last = c == end;
			lp->runq = c->rq_next;
			if (!lp->runq)
				lp->runq_tail = NULL;
			c->queued = false;
			hproxy__client_run(c);
			q = last ? NULL : lp->runq;
		}
		timers_run(lp);
		reap(lp);
		if (lp->accept_at && time_mono_ns() >= lp->accept_at) {
			lp->accept_at = 0;
			if (lp->lfd >= 0) {
				struct epoll_event ev = { .events = hproxy__listen_events(lp->h),
							  .data.ptr = &lp->ltag };
				epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->lfd, &ev);
			}
		}
		if (lp->quitting && (!lp->clients || time_mono_ns() >= lp->quit_at))
			break;
	}
	while (lp->clients)
		hproxy__client_close(lp->clients);
	for (size_t i = 0; i < lp->n_pools; i++) {
		lp->pools[i]->stale = true;
		while (lp->pools[i]->idle)
			hproxy__up_close(lp, lp->pools[i]->idle);
	}
	reap(lp);
	return NULL;
}

/* ---- the face ---- */

static void opts_default(struct hproxy_opts *o)
{
	if (o->threads < 1)
		o->threads = 1;
	if (!o->max_header_bytes)
		o->max_header_bytes = 64 * 1024;
	if (!o->max_body_bytes)
		o->max_body_bytes = 64LL * 1024 * 1024;
	if (o->header_timeout_ms <= 0)
		o->header_timeout_ms = 10000;
	if (o->idle_timeout_ms <= 0)
		o->idle_timeout_ms = 60000;
	if (o->connect_timeout_ms <= 0)
		o->connect_timeout_ms = 5000;
	if (o->upstream_timeout_ms <= 0)
		o->upstream_timeout_ms = 60000;
	if (o->drain_timeout_ms <= 0)
		o->drain_timeout_ms = 30000;
	if (!o->pool_max)
		o->pool_max = 64;
	if (!o->max_conns)
		o->max_conns = 10000;
	if (o->window_ms <= 0)
		o->window_ms = 60000;
}

/* the loops share one listening socket: a connection wakes one of them, not all */
uint32_t hproxy__listen_events(const struct hproxy *h)
{
	return EPOLLIN | (h->o.threads > 1 ? EPOLLEXCLUSIVE : 0);
}

static int loop_init(struct hproxy *h, struct hloop *lp, int idx, int lfd, struct err *e)
{
	lp->h = h;
	lp->idx = idx;
	lp->lfd = lfd;
	lp->ep = epoll_create1(EPOLL_CLOEXEC);
	lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&lp->mu, NULL);
	lp->n_ring = (size_t)((h->o.window_ms + 999) / 1000) + 1;
	for (int k = 0; k < HT__N; k++)
		lp->tl[k].next = lp->tl[k].prev = &lp->tl[k];
	lp->dur[HT_HEAD] = h->o.header_timeout_ms * 1000000;
	lp->dur[HT_IDLE] = h->o.idle_timeout_ms * 1000000;
	lp->dur[HT_CONNECT] = h->o.connect_timeout_ms * 1000000;
	lp->dur[HT_UPSTREAM] = h->o.upstream_timeout_ms * 1000000;
	lp->dur[HT_WRITE] = h->o.header_timeout_ms * 1000000;
	if (lp->ep < 0 || lp->evfd < 0)
		return err_set(e, errno, "epoll: %s", strerror(errno));
	lp->ltag = (struct hp_tag){ TAG_HP_LISTEN, lp };
	lp->etag = (struct hp_tag){ TAG_HP_EVENT, lp };
	struct epoll_event ev = { .events = hproxy__listen_events(h), .data.ptr = &lp->ltag };
	epoll_ctl(lp->ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.events = EPOLLIN;
	ev.data.ptr = &lp->etag;
	epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->evfd, &ev);
	return take_set(lp, NULL);
}

static void loops_done(struct hproxy *h)
{
	for (size_t i = 0; i < h->n_loops; i++) {
		struct hloop *lp = &h->loops[i];
		if (lp->lfd >= 0)
			close(lp->lfd);
		if (lp->ep >= 0)
			close(lp->ep);
		if (lp->evfd >= 0)
			close(lp->evfd);
		hproxy__set_unref(lp->set);
		for (size_t k = 0; k < lp->n_pools; k++)
			free(lp->pools[k]);
		free(lp->pools);
		free(lp->set_pool);
		free(lp->set_label);
		hproxy__labels_prune(lp);
		pthread_mutex_destroy(&lp->mu);
	}
	free(h->loops);
}

int hproxy_new(const struct hproxy_opts *o, const char *listen, char out_addr[NET_ADDR_STRLEN],
	       struct hproxy **out, struct err *e)
{
	struct net_addr la[NET_ADDR_MAX];
	size_t n_la = 0;
	char bound[NET_ADDR_STRLEN];
	struct hproxy *h = calloc(1, sizeof *h);
	int r;

	if (!h)
		return err_set(e, ENOMEM, "out of memory");
	if (o)
		h->o = *o;
	opts_default(&h->o);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->loops = calloc((size_t)h->o.threads, sizeof *h->loops);
	if (!h->loops) {
		r = err_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0; i < h->o.threads; i++)
		h->loops[i].lfd = h->loops[i].ep = h->loops[i].evfd = -1;
	r = net_resolve_tcp(listen, true, la, ARRAY_SIZE(la), &n_la, e);
	if (r < 0)
		goto fail;
	/* one listening socket, never SO_REUSEPORT: a second owner of the port (another proxy,
	 * another app's) gets "address already in use" from the kernel. Each loop holds a dup of
	 * it and waits on it with EPOLLEXCLUSIVE, so a connection wakes one idle loop. */
	int lfd = net_listen_on(&la[0], false, 4096, e);
	if (lfd < 0) {
		r = lfd;
		goto fail;
	}
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		getsockname(lfd, (struct sockaddr *)&ss, &sl);
		net_addr_str((struct sockaddr *)&ss, bound, sizeof bound);
	}
	for (int i = 0; i < h->o.threads; i++) {
		int fd = i == 0 ? lfd : fcntl(lfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			r = err_set(e, errno, "listener: %s", strerror(errno));
			goto fail;
		}
		h->n_loops++;
		r = loop_init(h, &h->loops[i], i, fd, e);
		if (r < 0)
			goto fail;
	}
	for (size_t i = 0; i < h->n_loops; i++) {
		r = -pthread_create(&h->loops[i].th, NULL, loop_main, &h->loops[i]);
		if (r < 0) {
			err_set(e, -r, "cannot start a proxy thread: %s", strerror(-r));
			pthread_mutex_lock(&h->mu);
			h->quitting = true;
			h->gen++;
			pthread_mutex_unlock(&h->mu);
			for (size_t k = 0; k < i; k++) {
				uint64_t one = 1;
				if (write(h->loops[k].evfd, &one, sizeof one) < 0)
					abort();
				pthread_join(h->loops[k].th, NULL);
			}
			goto fail;
		}
	}
	snprintf(out_addr, NET_ADDR_STRLEN, "%s", bound);
	*out = h;
	return 0;
fail:
	loops_done(h);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
	return r;
}

/* Publishes a change and waits until every loop has taken it. */
static void announce(struct hproxy *h)
{
	uint64_t gen = ++h->gen, one = 1;
	pthread_mutex_unlock(&h->mu);
	for (size_t i = 0; i < h->n_loops; i++)
		if (write(h->loops[i].evfd, &one, sizeof one) < 0 && errno != EAGAIN)
			abort(); /* an eventfd write cannot fail but by overflow */
	pthread_mutex_lock(&h->mu);
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < h->n_loops; i++)
			all = all && h->loops[i].gen >= gen;
		if (all)
			break;
		pthread_cond_wait(&h->cv, &h->mu);
	}
	pthread_mutex_unlock(&h->mu);
}

int hproxy_set_upstreams(struct hproxy *h, const struct proxy_upstream *ups, size_t n,
			 struct err *e)
{
	struct hp_set *s = calloc(1, sizeof *s + n * sizeof s->v[0]);
	if (!s)
		return err_set(e, ENOMEM, "out of memory");
	atomic_init(&s->refs, 1);
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		struct hp_upstream *u = &s->v[i];
		size_t got = 0;
		struct err le;
		if (strlen(ups[i].addr) >= sizeof u->key) {
			free(s);
			return err_set(e, CAIRN_EINPUT, "upstream address too long: '%.40s...'",
				       ups[i].addr);
		}
		snprintf(u->key, sizeof u->key, "%s", ups[i].addr);
		snprintf(u->label, sizeof u->label, "%s", ups[i].label ? ups[i].label : ups[i].addr);
		/* a name that does not resolve refuses its requests (→ the next upstream) */
		u->resolved = net_resolve_tcp(ups[i].addr, false, &u->addr, 1, &got, &le) >= 0 && got;
	}
	pthread_mutex_lock(&h->mu);
	hproxy__set_unref(h->set);
	h->set = s;
	announce(h);
	return 0;
}

void hproxy_set_stopped(struct hproxy *h, bool stopped)
{
	pthread_mutex_lock(&h->mu);
	h->stopped = stopped;
	announce(h);
}

void hproxy_free(struct hproxy *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->quitting = true;
	h->gen++;
	pthread_mutex_unlock(&h->mu);
	for (size_t i = 0; i < h->n_loops; i++) {
		uint64_t one = 1;
		if (write(h->loops[i].evfd, &one, sizeof one) < 0 && errno != EAGAIN)
			abort();
	}
	for (size_t i = 0; i < h->n_loops; i++)
		pthread_join(h->loops[i].th, NULL);
	loops_done(h);
	hproxy__set_unref(h->set);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
}
