/* proxy engine: the thread-safe face of the loops. Binds listeners and resolves upstreams in
 * the caller's thread (so errors come back at once), then posts one command per loop and waits
 * until every loop has applied it — the caller waits, the data path does not. */
#include "proxy/proxy-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int proxy_engine_new(const struct proxy_engine_opts *o, struct proxy_engine **out, struct err *e)
{
	struct proxy_engine *eng = calloc(1, sizeof *eng);
	if (!eng)
		return err_set(e, ENOMEM, "out of memory");
	if (o)
		eng->o = *o;
	if (eng->o.threads <= 0)
		eng->o.threads = 1;
	if (eng->o.threads > 64)
		eng->o.threads = 64;
	if (!eng->o.max_conns)
		eng->o.max_conns = 10000;
	if (!eng->o.max_buffered)
		eng->o.max_buffered = 1 << 20;
	if (!eng->o.drain_timeout_ms)
		eng->o.drain_timeout_ms = 30000;
	if (!eng->o.connect_timeout_ms)
		eng->o.connect_timeout_ms = 5000;
	signal(SIGPIPE, SIG_IGN); /* belt and braces: every send uses MSG_NOSIGNAL */
	pthread_mutex_init(&eng->mu, NULL);
	eng->loops = calloc((size_t)eng->o.threads, sizeof *eng->loops);
	if (!eng->loops) {
		free(eng);
		return err_set(e, ENOMEM, "out of memory");
	}
	for (int i = 0; i < eng->o.threads; i++) {
		int r = proxy__loop_start(eng, &eng->loops[i], i, e);
		if (r < 0) {
			eng->o.threads = i;
			proxy_engine_free(eng);
			return r;
		}
	}
	*out = eng;
	return 0;
}

/* Posts a copy of tmpl to every loop (fds[i] and upsets[i] go to loop i) and waits. */
static void post_all(struct proxy_engine *eng, const struct cmd *tmpl, const int *fds,
		     struct upset **ups, struct proxy_stats *stats)
{
	struct cmd_done d = { .pending = eng->o.threads };
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	for (int i = 0; i < eng->o.threads; i++) {
		struct loop *lp = &eng->loops[i];
		struct cmd *c = malloc(sizeof *c);
		if (!c)
			abort(); /* loops and the caller would disagree about what exists */
		*c = *tmpl;
		c->next = NULL;
		c->fd = fds ? fds[i] : -1;
		c->ups = ups ? ups[i] : NULL;
		c->stats = stats ? &stats[i] : NULL;
		c->done = &d;
		pthread_mutex_lock(&lp->mu);
		if (lp->cq_tail)
			lp->cq_tail->next = c;
		else
			lp->cq_head = c;
		lp->cq_tail = c;
		pthread_mutex_unlock(&lp->mu);
		uint64_t one = 1;
		if (write(lp->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
			abort();
	}
	pthread_mutex_lock(&d.mu);
	while (d.pending > 0)
		pthread_cond_wait(&d.cv, &d.mu);
	pthread_mutex_unlock(&d.mu);
	pthread_cond_destroy(&d.cv);
	pthread_mutex_destroy(&d.mu);
}

void proxy_engine_free(struct proxy_engine *eng)
{
	if (!eng)
		return;
	struct cmd stop = { .kind = CMD_STOP };
	if (eng->o.threads > 0)
		post_all(eng, &stop, NULL, NULL, NULL);
	for (int i = 0; i < eng->o.threads; i++)
		proxy__loop_stop(&eng->loops[i]);
	free(eng->loops);
	pthread_mutex_destroy(&eng->mu);
	free(eng);
}

/* Binds one listening socket, never SO_REUSEPORT (a second owner of the port gets "address
 * already in use"), and gives each loop a dup of it: with several loops they wait on it with
 * EPOLLEXCLUSIVE (loop.c), so a connection wakes one idle loop. */
static int bind_all(struct proxy_engine *eng, const char *listen, int *fds, char *out_addr,
		    struct err *e)
{
	struct net_addr a[NET_ADDR_MAX];
	size_t n = 0;
	int r = net_resolve_tcp(listen, true, a, ARRAY_SIZE(a), &n, e);
	if (r < 0)
		return r;
	for (int i = 0; i < eng->o.threads; i++) {
		fds[i] = i == 0 ? net_listen_on(&a[0], false, 1024, e)
				: fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
		if (fds[i] < 0) {
			r = i == 0 ? fds[i] : err_set(e, errno, "listener: %s", strerror(errno));
			while (i-- > 0)
				close(fds[i]);
			return r;
		}
		if (i == 0)
			net_local_addr_str(fds[0], out_addr, NET_ADDR_STRLEN);
	}
	return 0;
}

/* Builds one upset per loop, and the label table they point into. */
static int make_upsets(struct proxy_engine *eng, const struct proxy_upstream *ups, size_t n,
		       struct upset **out, char (**out_labels)[PROXY_TOXIC_NAME_MAX], struct err *e)
{
	size_t sz = sizeof(struct upset) + n * sizeof(struct upstream_ent);
	struct upset *proto = calloc(1, sz);
	char(*labels)[PROXY_TOXIC_NAME_MAX] = calloc(n ? n : 1, sizeof *labels);
	if (!proto || !labels) {
		free(proto);
		free(labels);
		return err_set(e, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		struct err ignored;
		snprintf(labels[i], sizeof labels[i], "%s", ups[i].label ? ups[i].label : ups[i].addr);
		/* a name that does not resolve is kept with no address: its connections are
		 * accepted and closed, as Toxiproxy does when the dial fails */
		if (net_resolve_tcp(ups[i].addr, false, proto->v[i].addrs, NET_ADDR_MAX,
				    &proto->v[i].n_addrs, &ignored) < 0)
			proto->v[i].n_addrs = 0;
	}
	proto->n = n;
	for (int i = 0; i < eng->o.threads; i++) {
		out[i] = malloc(sz);
		if (!out[i]) {
			while (i-- > 0)
				free(out[i]);
			free(proto);
			free(labels);
			return err_set(e, ENOMEM, "out of memory");
		}
		memcpy(out[i], proto, sz);
		out[i]->refs = 1;
		out[i]->rr = 0;
	}
	free(proto);
	*out_labels = labels;
	return 0;
}

int64_t proxy_engine_add(struct proxy_engine *eng, const char *listen,
			 const struct proxy_upstream *ups, size_t n_ups, bool enabled,
			 char out_addr[NET_ADDR_STRLEN], struct err *e)
{
	int fds[64];
	struct upset *us[64];
	char(*labels)[PROXY_TOXIC_NAME_MAX] = NULL;
	int r;

	pthread_mutex_lock(&eng->mu);
	for (int i = 0; i < eng->o.threads; i++)
		fds[i] = -1;
	snprintf(out_addr, NET_ADDR_STRLEN, "%s", listen);
	if (enabled && (r = bind_all(eng, listen, fds, out_addr, e)) < 0)
		goto out;
	if ((r = make_upsets(eng, ups, n_ups, us, &labels, e)) < 0) {
		for (int i = 0; i < eng->o.threads; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		goto out;
	}
	struct cmd c = { .kind = CMD_ADD, .id = ++eng->next_id, .labels = labels };
	post_all(eng, &c, fds, us, NULL);
	free(labels);
	pthread_mutex_unlock(&eng->mu);
	return c.id;
out:
	pthread_mutex_unlock(&eng->mu);
	return r;
}

static int post_simple(struct proxy_engine *eng, struct cmd *c)
{
	pthread_mutex_lock(&eng->mu);
	post_all(eng, c, NULL, NULL, NULL);
	pthread_mutex_unlock(&eng->mu);
	return 0;
}

int proxy_engine_remove(struct proxy_engine *eng, int64_t id)
{
	struct cmd c = { .kind = CMD_REMOVE, .id = id };
	return post_simple(eng, &c);
}

int proxy_engine_disable(struct proxy_engine *eng, int64_t id)
{
	struct cmd c = { .kind = CMD_DISABLE, .id = id };
	return post_simple(eng, &c);
}

int proxy_engine_enable(struct proxy_engine *eng, int64_t id, const char *listen,
			char out_addr[NET_ADDR_STRLEN], struct err *e)
{
	int fds[64], r;
	pthread_mutex_lock(&eng->mu);
	r = bind_all(eng, listen, fds, out_addr, e);
	if (r == 0) {
		struct cmd c = { .kind = CMD_ENABLE, .id = id };
		post_all(eng, &c, fds, NULL, NULL);
	}
	pthread_mutex_unlock(&eng->mu);
	return r;
}

int proxy_engine_set_upstreams(struct proxy_engine *eng, int64_t id, const struct proxy_upstream *ups,
			       size_t n_ups, struct err *e)
{
	struct upset *us[64];
	char(*labels)[PROXY_TOXIC_NAME_MAX] = NULL;
	pthread_mutex_lock(&eng->mu);
	int r = make_upsets(eng, ups, n_ups, us, &labels, e);
	if (r == 0) {
		struct cmd c = { .kind = CMD_UPSTREAMS, .id = id, .labels = labels };
		post_all(eng, &c, NULL, us, NULL);
		free(labels);
	}
	pthread_mutex_unlock(&eng->mu);
	return r;
}

int proxy_engine_set_toxics(struct proxy_engine *eng, int64_t id, enum proxy_dir dir,
			    const struct proxy_toxic *chain, size_t n)
{
	struct cmd *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	if (n > PROXY_TOXICS_MAX)
		n = PROXY_TOXICS_MAX;
	c->kind = CMD_TOXICS;
	c->id = id;
	c->dir = dir;
	memcpy(c->chain, chain, n * sizeof *chain);
	c->n_chain = n;
	post_simple(eng, c);
	free(c);
	return 0;
}

int proxy_engine_stats(struct proxy_engine *eng, int64_t id, struct proxy_stats *out)
{
	struct proxy_stats *per = calloc((size_t)eng->o.threads, sizeof *per);
	if (!per)
		return -ENOMEM;
	struct cmd c = { .kind = CMD_STATS, .id = id };
	pthread_mutex_lock(&eng->mu);
	post_all(eng, &c, NULL, NULL, per);
	pthread_mutex_unlock(&eng->mu);
	memset(out, 0, sizeof *out);
	for (int i = 0; i < eng->o.threads; i++) {
		struct proxy_stats *s = &per[i];
		out->conns_total += s->conns_total;
		out->conns_active += s->conns_active;
		out->conns_refused_limit += s->conns_refused_limit;
		out->bytes_up += s->bytes_up;
		out->bytes_down += s->bytes_down;
		out->bytes_sent_up += s->bytes_sent_up;
		out->bytes_sent_down += s->bytes_sent_down;
		for (size_t k = 0; k < s->n_labels; k++) {
			size_t j = 0;
			while (j < out->n_labels && strcmp(out->labels[j].label, s->labels[k].label))
				j++;
			if (j == out->n_labels) {
				if (j == ARRAY_SIZE(out->labels))
					continue;
				out->labels[out->n_labels++] = s->labels[k];
				continue;
			}
			out->labels[j].conns_total += s->labels[k].conns_total;
			out->labels[j].conns_active += s->labels[k].conns_active;
			out->labels[j].connect_failures += s->labels[k].connect_failures;
			out->labels[j].bytes_up += s->labels[k].bytes_up;
			out->labels[j].bytes_down += s->labels[k].bytes_down;
			out->labels[j].upstream_resets += s->labels[k].upstream_resets;
		}
	}
	free(per);
	return 0;
}

int proxy_engine_set_protocol(struct proxy_engine *eng, int64_t id, const struct proxy_protocol *p)
{
	struct cmd c = { .kind = CMD_PROTO, .id = id };
	if (p)
		c.proto = *p;
	return post_simple(eng, &c);
}
