/* proxy toxics: the per-link stage chain. An event (a chunk of bytes with its receive time, or
 * an EOF) runs through the active stages in order; each stage may delay, split, drop or turn
 * it into a close, exactly as Toxiproxy's toxics do (toxiproxy-api.md §1.6). The output is
 * appended to the link's queue with release times that never go backwards (FIFO). */
#include "proxy/proxy-internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL

static const char *const type_names[TOXIC__COUNT] = {
	"noop", "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data",
};
static const char *const attrs_none[] = { NULL };
static const char *const attrs_latency[] = { "latency", "jitter", NULL };
static const char *const attrs_bandwidth[] = { "rate", NULL };
static const char *const attrs_delay[] = { "delay", NULL };
static const char *const attrs_timeout[] = { "timeout", NULL };
static const char *const attrs_slicer[] = { "average_size", "size_variation", "delay", NULL };
static const char *const attrs_limit[] = { "bytes", NULL };

/* Units of each type's attributes, in proxy_toxic_attr_names order. */
static const char *const units_latency[] = { "ms", "ms" };
static const char *const units_bandwidth[] = { "KB/s" };
static const char *const units_ms[] = { "ms" };
static const char *const units_slicer[] = { "bytes", "bytes", "us" };
static const char *const units_limit[] = { "bytes" };

#define ATTR_MAX_TIME ((int64_t)INT32_MAX)
#define ATTR_MAX_BYTES ((int64_t)1 << 53) /* exact in a double: every JSON client reads it */

const char *proxy_toxic_attr_unit(enum proxy_toxic_type t, size_t i)
{
	static const char *const *const units[TOXIC__COUNT] = {
		[TOXIC_LATENCY] = units_latency, [TOXIC_BANDWIDTH] = units_bandwidth,
		[TOXIC_SLOW_CLOSE] = units_ms,   [TOXIC_TIMEOUT] = units_ms,
		[TOXIC_RESET_PEER] = units_ms,   [TOXIC_SLICER] = units_slicer,
		[TOXIC_LIMIT_DATA] = units_limit,
	};
	const char *const *names = proxy_toxic_attr_names(t);
	for (size_t k = 0; k <= i; k++)
		if (!names[k])
			return "";
	return units[t][i];
}

int64_t proxy_toxic_attr_max(enum proxy_toxic_type t, size_t i)
{
	if (t == TOXIC_LIMIT_DATA)
		return ATTR_MAX_BYTES;
	UNUSED(i);
	return ATTR_MAX_TIME; /* times, a rate, slice sizes: 2^31-1 */
}

const char *proxy_toxic_type_name(enum proxy_toxic_type t)
{
	return (unsigned)t < TOXIC__COUNT ? type_names[t] : "?";
}

int proxy_toxic_type_parse(const char *s, enum proxy_toxic_type *out)
{
	for (int i = 0; i < TOXIC__COUNT; i++)
		if (!strcmp(s, type_names[i])) {
			*out = (enum proxy_toxic_type)i;
			return 0;
		}
	return -1;
}

const char *const *proxy_toxic_attr_names(enum proxy_toxic_type t)
{
	switch (t) {
	case TOXIC_LATENCY:
		return attrs_latency;
	case TOXIC_BANDWIDTH:
		return attrs_bandwidth;
	case TOXIC_SLOW_CLOSE:
		return attrs_delay;
	case TOXIC_TIMEOUT:
	case TOXIC_RESET_PEER:
		return attrs_timeout;
	case TOXIC_SLICER:
		return attrs_slicer;
	case TOXIC_LIMIT_DATA:
		return attrs_limit;
	default:
		return attrs_none;
	}
}

/* ---- events ---- */

struct ev *proxy__ev_new(int kind, const void *p, size_t n, int64_t t)
{
	struct ev *e = malloc(sizeof *e + n);
	if (!e)
		return NULL;
	e->next = NULL;
	e->t = t;
	e->len = (uint32_t)n;
	e->off = 0;
	e->kind = (uint8_t)kind;
	if (n)
		memcpy(e->data, p, n);
	return e;
}

void proxy__evq_push(struct evq *q, struct ev *e)
{
	e->next = NULL;
	if (e->t < q->last_t)
		e->t = q->last_t; /* FIFO: nothing overtakes what is already queued */
	q->last_t = e->t;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->bytes += e->len - e->off;
}

void proxy__evq_clear(struct evq *q)
{
	while (q->head) {
		struct ev *e = q->head;
		q->head = e->next;
		free(e);
	}
	q->tail = NULL;
	q->bytes = 0;
}

/* A small list of events between stages. */
struct evlist {
	struct ev *head, *tail;
};

static void el_push(struct evlist *l, struct ev *e)
{
	e->next = NULL;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
}

static int64_t add_sat(int64_t a, int64_t b)
{
	return (a == TIME_INF || b >= TIME_INF - a) ? TIME_INF : a + b;
}

/* a * b for b > 0, clamped to [0, TIME_INF]: attributes arrive from outside (the engine's API
 * takes any int64), and a wrapped product would turn a long delay into none. */
static int64_t mul_sat(int64_t a, int64_t b)
{
	if (a <= 0)
		return 0;
	return a > TIME_INF / b ? TIME_INF : a * b;
}

/* A size attribute into 0..2^31-1: sums and doubles of two of them cannot overflow. */
static int64_t clamp_attr(int64_t v)
{
	return v < 0 ? 0 : v > INT32_MAX ? INT32_MAX : v;
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* Splits e into pieces of the given sizes (sizes sum to e->len); the pieces are pushed to out
 * with times t0, t0 + step, ... (step_fn gives each piece's time). Frees e. */
static void split_push(struct evlist *out, struct ev *e, const size_t *sizes, const int64_t *times,
		       size_t n)
{
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		struct ev *p = proxy__ev_new(EV_DATA, e->data + off, sizes[i], times[i]);
		off += sizes[i];
		if (p)
			el_push(out, p);
	}
	free(e);
}

static void stage_bandwidth(struct stage *s, struct ev *e, struct evlist *out)
{
	int64_t rate = s->tx.a[0]; /* KB/s: len bytes take len * 1 ms / rate */
	if (rate <= 0) {
		e->t = TIME_INF; /* Toxiproxy's rate 0 stalls until the toxic goes */
		s->busy = TIME_INF;
		el_push(out, e);
		return;
	}
	int64_t start = max64(e->t, s->busy);
	if (e->kind != EV_DATA) {
		e->t = start;
		el_push(out, e);
		return;
	}
	size_t piece = (size_t)mul_sat(rate, 100), n = (e->len + piece - 1) / piece;
	if (n <= 1) {
		s->busy = e->t = add_sat(start, (int64_t)e->len * MS / rate);
		el_push(out, e);
		return;
	}
	size_t *sizes = malloc(n * sizeof *sizes);
	int64_t *times = malloc(n * sizeof *times);
	if (!sizes || !times) {
		free(sizes);
		free(times);
		s->busy = e->t = add_sat(start, (int64_t)e->len * MS / rate);
		el_push(out, e);
		return;
	}
	size_t left = e->len, done = 0;
	for (size_t i = 0; i < n; i++) {
		sizes[i] = left < piece ? left : piece;
		left -= sizes[i];
		done += sizes[i];
		times[i] = add_sat(start, (int64_t)done * MS / rate);
	}
	s->busy = times[n - 1];
	split_push(out, e, sizes, times, n);
	free(sizes);
	free(times);
}

static void stage_slicer(struct loop *lp, struct stage *s, struct ev *e, struct evlist *out)
{
	int64_t avg = clamp_attr(s->tx.a[0]), var = clamp_attr(s->tx.a[1]), delay = mul_sat(s->tx.a[2], 1000); /* us → ns */
	if (e->kind != EV_DATA || avg <= 0 || e->len == 0) {
		e->t = max64(e->t, s->busy);
		el_push(out, e);
		return;
	}
	size_t cap = e->len / (size_t)(avg - var > 0 ? avg - var : 1) + 2, n = 0;
	size_t *sizes = malloc(cap * sizeof *sizes);
	int64_t *times = malloc(cap * sizeof *times);
	if (!sizes || !times) {
		free(sizes);
		free(times);
		el_push(out, e);
		return;
	}
	int64_t t = max64(e->t, s->busy);
	size_t pos = 0;
	while (pos < e->len && n + 1 < cap) {
		size_t left = e->len - pos, sz = left;
		if ((int64_t)left >= avg) { /* Go: chunk(start, start+avg±var) while len >= avg */
			int64_t k = avg;
			if (var > 0)
				k += (int64_t)(proxy__rand01(lp) * (double)(2 * var)) - var;
			sz = k < 1 ? 1 : (size_t)k > left ? left : (size_t)k;
		}
		sizes[n] = sz;
		times[n++] = t;
		t = add_sat(t, delay);
		pos += sz;
	}
	if (pos < e->len) { /* cap reached: the rest in one piece */
		sizes[n] = e->len - pos;
		times[n++] = t;
		t = add_sat(t, delay);
	}
	s->busy = t;
	split_push(out, e, sizes, times, n);
	free(sizes);
	free(times);
}

static void stage_run(struct loop *lp, struct stage *s, struct ev *e,
		      struct evlist *out, int64_t now)
{
	switch (s->tx.type) {
	case TOXIC_LATENCY: {
		int64_t d = mul_sat(s->tx.a[0], MS), j = mul_sat(s->tx.a[1], MS);
		if (e->kind == EV_DATA && j > 0 && j < TIME_INF / 2)
			d = add_sat(d, (int64_t)(proxy__rand01(lp) * (double)(2 * j))) - j;
		if (e->kind == EV_DATA)
			e->t = add_sat(e->t, d > 0 ? d : 0);
		e->t = s->busy = max64(e->t, s->busy);
		el_push(out, e);
		return;
	}
	case TOXIC_BANDWIDTH:
		stage_bandwidth(s, e, out);
		return;
	case TOXIC_SLOW_CLOSE:
		if (e->kind != EV_DATA)
			e->t = add_sat(e->t, mul_sat(s->tx.a[0], MS));
		el_push(out, e);
		return;
	case TOXIC_TIMEOUT:
		if (e->kind == EV_DATA) {
			if (s->tx.a[0] > 0)
				s->deadline = add_sat(now, mul_sat(s->tx.a[0], MS)); /* traffic re-arms it */
			free(e);
			return;
		}
		el_push(out, e);
		return;
	case TOXIC_RESET_PEER:
		if (e->kind == EV_DATA) {
			if (!s->fired) {
				s->fired = true;
				e->kind = EV_CLOSE; /* the first chunk is swallowed; close after timeout */
				e->len = e->off = 0;
				e->t = add_sat(e->t, mul_sat(s->tx.a[0], MS));
				el_push(out, e);
				return;
			}
			free(e);
			return;
		}
		el_push(out, e);
		return;
	case TOXIC_SLICER:
		stage_slicer(lp, s, e, out);
		return;
	case TOXIC_LIMIT_DATA:
		if (e->kind == EV_DATA) {
			int64_t left = s->tx.a[0] - s->count;
			if (s->fired || left <= 0) {
				e->kind = EV_CLOSE;
				e->len = e->off = 0;
				s->fired = true;
				el_push(out, e);
				return;
			}
			if ((int64_t)e->len > left)
				e->len = (uint32_t)left;
			s->count += e->len;
			el_push(out, e);
			if (s->count >= s->tx.a[0]) {
				s->fired = true;
				struct ev *c = proxy__ev_new(EV_CLOSE, NULL, 0, e->t);
				if (c)
					el_push(out, c);
			}
			return;
		}
		el_push(out, e);
		return;
	default:
		el_push(out, e);
		return;
	}
}

void proxy__toxics_run(struct loop *lp, struct link *l, struct ev *in, int64_t now)
{
	struct evlist cur = { NULL, NULL };
	el_push(&cur, in);
	for (size_t i = 0; i < l->n_stages && cur.head; i++) {
		struct stage *s = &l->stages[i];
		if (!s->active)
			continue;
		struct evlist out = { NULL, NULL };
		for (struct ev *e = cur.head, *nx; e; e = nx) {
			nx = e->next;
			stage_run(lp, s, e, &out, now);
		}
		cur = out;
	}
	for (struct ev *e = cur.head, *nx; e; e = nx) {
		nx = e->next;
		proxy__evq_push(&l->q, e);
	}
}

int64_t proxy__idle_deadline(const struct link *l)
{
	int64_t d = TIME_INF;
	for (size_t i = 0; i < l->n_stages; i++)
		if (l->stages[i].active && l->stages[i].tx.type == TOXIC_TIMEOUT &&
		    l->stages[i].deadline < d)
			d = l->stages[i].deadline;
	return d;
}

void proxy__stages_build(struct loop *lp, struct link *l, const struct proxy_toxic *chain, size_t n,
			 int64_t now, bool *out_close)
{
	struct stage *ns = n ? calloc(n, sizeof *ns) : NULL;
	bool stalled = false;

	if (n && !ns)
		return; /* keep the old chain rather than lose the connection's state */
	for (size_t i = 0; i < n; i++) {
		struct stage *s = &ns[i];
		s->tx = chain[i];
		s->deadline = TIME_INF;
		for (size_t k = 0; k < l->n_stages; k++)
			if (!strcmp(l->stages[k].tx.name, chain[i].name) &&
			    l->stages[k].tx.type == chain[i].type) {
				s->fired = l->stages[k].fired;
				s->count = l->stages[k].count;
				s->busy = l->stages[k].busy == TIME_INF ? now : l->stages[k].busy;
			}
		/* Toxiproxy restarts every toxic of the direction: toxicity is rolled again */
		s->active = s->tx.toxicity >= 1.0f || proxy__rand01(lp) < (double)s->tx.toxicity;
		if (s->active && s->tx.type == TOXIC_TIMEOUT && s->tx.a[0] > 0)
			s->deadline = add_sat(now, mul_sat(s->tx.a[0], MS));
		if (s->active && s->tx.type == TOXIC_BANDWIDTH && s->tx.a[0] <= 0)
			stalled = true;
	}
	/* a removed timeout toxic closes its connections: the dropped bytes left them corrupt */
	for (size_t k = 0; k < l->n_stages; k++) {
		if (l->stages[k].tx.type != TOXIC_TIMEOUT)
			continue;
		bool kept = false;
		for (size_t i = 0; i < n; i++)
			kept |= !strcmp(ns[i].tx.name, l->stages[k].tx.name);
		if (!kept)
			*out_close = true;
	}
	if (!stalled) { /* a stall that healed: held events go now, in order */
		for (struct ev *e = l->q.head; e; e = e->next)
			if (e->t == TIME_INF)
				e->t = now;
		if (l->q.last_t == TIME_INF)
			l->q.last_t = now;
	}
	free(l->stages);
	l->stages = ns;
	l->n_stages = n;
	l->any_active = false;
	for (size_t i = 0; i < n; i++)
		l->any_active |= ns[i].active && ns[i].tx.type != TOXIC_NOOP;
}
