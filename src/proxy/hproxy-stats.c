/* hproxy stats: per-loop counters of each label (release) — totals since the label appeared and
 * a ring of one-second slots for the sliding window — and their sums over loops. The loop
 * writes under its own mutex (one uncontended lock per response); readers take each loop's
 * mutex in turn. There is no global lock on the request path. */
#include "proxy/hproxy-internal.h"

#include <stdlib.h>
#include <string.h>

static int64_t now_sec(void)
{
	return time_mono_ns() / 1000000000;
}

static void label_clear(struct hloop *lp, struct hp_label *l, const char *name)
{
	struct hp_slot *ring = l->ring;
	memset(l, 0, sizeof *l);
	l->ring = ring;
	for (size_t i = 0; i < lp->n_ring; i++) {
		memset(&ring[i], 0, sizeof ring[i]);
		ring[i].sec = -1;
	}
	l->used = true;
	snprintf(l->name, sizeof l->name, "%s", name);
	snprintf(l->total.label, sizeof l->total.label, "%s", name);
}

static bool in_set(struct hloop *lp, const char *name)
{
	for (size_t i = 0; lp->set && i < lp->set->n; i++)
		if (!strcmp(lp->set->v[i].label, name))
			return true;
	return false;
}

/* The label's index, created when new. When every slot is taken, the counters of a label that
 * is no longer in the set and has been quiet longest make room. -1 when nothing can. */
int hproxy__label_get(struct hloop *lp, const char *name)
{
	int free_i = -1, old_i = -1;
	int64_t old_sec = INT64_MAX;
	for (int i = 0; i < HP_LABELS_MAX; i++) {
		struct hp_label *l = &lp->labels[i];
		if (!l->used) {
			if (free_i < 0)
				free_i = i;
			continue;
		}
		if (!strcmp(l->name, name))
			return i;
		int64_t last = -1;
		for (size_t k = 0; k < lp->n_ring; k++)
			if (l->ring[k].sec > last)
				last = l->ring[k].sec;
		if (!in_set(lp, l->name) && l->inflight == 0 && last < old_sec) {
			old_sec = last;
			old_i = i;
		}
	}
	int i = free_i >= 0 ? free_i : old_i;
	if (i < 0)
		return -1;
	if (!lp->labels[i].ring) {
		lp->labels[i].ring = calloc(lp->n_ring, sizeof *lp->labels[i].ring);
		if (!lp->labels[i].ring)
			return -1;
	}
	pthread_mutex_lock(&lp->mu);
	label_clear(lp, &lp->labels[i], name);
	pthread_mutex_unlock(&lp->mu);
	return i;
}

void hproxy__flight(struct hcl *c, int label)
{
	struct hloop *lp = c->lp;
	if (c->fl == label)
		return;
	pthread_mutex_lock(&lp->mu);
	if (c->fl >= 0 && lp->labels[c->fl].inflight > 0)
		lp->labels[c->fl].inflight--;
	if (label >= 0)
		lp->labels[label].inflight++;
	pthread_mutex_unlock(&lp->mu);
	c->fl = label;
}

int64_t hproxy_inflight(struct hproxy *h, const char *label)
{
	int64_t n = 0;
	for (size_t li = 0; li < h->n_loops; li++) {
		struct hloop *lp = &h->loops[li];
		pthread_mutex_lock(&lp->mu);
		for (int i = 0; i < HP_LABELS_MAX; i++)
			if (lp->labels[i].used && !strcmp(lp->labels[i].name, label))
				n += lp->labels[i].inflight;
		pthread_mutex_unlock(&lp->mu);
	}
	return n;
}

void hproxy__count(struct hloop *lp, int label, int status, int64_t us)
{
	if (label < 0)
		return;
	int cls = status >= 100 && status < 600 ? status / 100 : 0;
	int b = proxy__http_bucket(us);
	int64_t sec = now_sec();
	pthread_mutex_lock(&lp->mu);
	struct hp_label *l = &lp->labels[label];
	struct hp_slot *s = &l->ring[(size_t)sec % lp->n_ring];
	if (s->sec != sec) {
		memset(s, 0, sizeof *s);
		s->sec = sec;
	}
	s->requests++;
	s->status[cls]++;
	s->hist[b]++;
	l->total.requests++;
	l->total.status[cls]++;
	l->total.hist[b]++;
	pthread_mutex_unlock(&lp->mu);
}

void hproxy__labels_prune(struct hloop *lp)
{
	for (int i = 0; i < HP_LABELS_MAX; i++) {
		free(lp->labels[i].ring);
		lp->labels[i].ring = NULL;
		lp->labels[i].used = false;
	}
}

int hproxy_stats(struct hproxy *h, const char *label, int64_t window_ms,
		 struct proxy_http_stats *out)
{
	struct proxy_http_stats acc;
	bool found = false;
	int64_t now = now_sec();
	int64_t k = (window_ms + 999) / 1000;

	memset(&acc, 0, sizeof acc);
	snprintf(acc.label, sizeof acc.label, "%s", label);
	for (size_t li = 0; li < h->n_loops; li++) {
		struct hloop *lp = &h->loops[li];
		if (k > (int64_t)lp->n_ring - 1)
			k = (int64_t)lp->n_ring - 1;
		pthread_mutex_lock(&lp->mu);
		for (int i = 0; i < HP_LABELS_MAX; i++) {
			struct hp_label *l = &lp->labels[i];
			if (!l->used || strcmp(l->name, label))
				continue;
			found = true;
			if (window_ms == 0) {
				acc.requests += l->total.requests;
				acc.parse_errors += l->total.parse_errors;
				for (int j = 0; j < 6; j++)
					acc.status[j] += l->total.status[j];
				for (int j = 0; j < PROXY_HTTP_BUCKETS; j++)
					acc.hist[j] += l->total.hist[j];
				continue;
			}
			for (size_t s = 0; s < lp->n_ring; s++) {
				const struct hp_slot *sl = &l->ring[s];
				if (sl->sec < 0 || sl->sec < now - k || sl->sec > now)
					continue;
				acc.requests += sl->requests;
				acc.parse_errors += sl->parse_errors;
				for (int j = 0; j < 6; j++)
					acc.status[j] += sl->status[j];
				for (int j = 0; j < PROXY_HTTP_BUCKETS; j++)
					acc.hist[j] += sl->hist[j];
			}
		}
		pthread_mutex_unlock(&lp->mu);
	}
	if (!found)
		return -1;
	*out = acc;
	return 0;
}

size_t hproxy_labels(struct hproxy *h, char (*out)[PROXY_TOXIC_NAME_MAX], size_t max)
{
	size_t n = 0;
	for (size_t li = 0; li < h->n_loops; li++) {
		struct hloop *lp = &h->loops[li];
		pthread_mutex_lock(&lp->mu);
		for (int i = 0; i < HP_LABELS_MAX && n < max; i++) {
			if (!lp->labels[i].used)
				continue;
			bool dup = false;
			for (size_t j = 0; j < n && !dup; j++)
				dup = !strcmp(out[j], lp->labels[i].name);
			if (!dup)
				snprintf(out[n++], PROXY_TOXIC_NAME_MAX, "%s", lp->labels[i].name);
		}
		pthread_mutex_unlock(&lp->mu);
	}
	return n;
}
