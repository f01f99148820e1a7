/* fault: the Toxiproxy-compatible model — named proxies with their toxics, and the routing of
 * API requests onto it (toxiproxy-api.md §1.2–1.5: shapes, codes, quirks). It owns the names
 * and texts; the engine owns sockets and bytes; fault-policy.c decides what a proxy may bind and
 * where it may send, before anything changes. One lock serialises requests. */
#include "proxy/fault-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>


#define FAULT_PROXIES_MAX 4096

struct fault *fault_new(struct proxy_engine *eng)
{
	struct fault *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->eng = eng;
	pthread_mutex_init(&f->mu, NULL);
	return f;
}

static void fproxy_free(struct fproxy *p)
{
	if (!p)
		return;
	for (int d = 0; d < 2; d++)
		for (size_t i = 0; i < p->n_tox[d]; i++)
			free(p->tox[d][i].stream);
	free(p->name);
	free(p->listen);
	free(p->upstream);
	free(p);
}

void fault_free(struct fault *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		proxy_engine_remove(f->eng, f->v[i]->id);
		fproxy_free(f->v[i]);
	}
	free(f->v);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

static struct fproxy *find(struct fault *f, const char *name, size_t *out_idx)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->v[i]->name, name)) {
			if (out_idx)
				*out_idx = i;
			return f->v[i];
		}
	return NULL;
}

static int reply_err(struct fault_reply *out, int status, const char *msg)
{
	buf_reset(&out->body);
	buf_adds(&out->body, "{\"error\":");
	fault__json_str(&out->body, msg);
	buf_addf(&out->body, ",\"status\":%d}\n", status);
	out->status = status;
	out->json_type = false; /* http.Error: text/plain, though the body is JSON */
	return status;
}

static int reply_ok(struct fault_reply *out, int status)
{
	out->status = status;
	out->json_type = status != 204;
	return status;
}

/* ---- engine glue ---- */

static void push_chain(struct fault *f, struct fproxy *p, int d)
{
	struct proxy_toxic chain[PROXY_TOXICS_MAX];
	for (size_t i = 0; i < p->n_tox[d]; i++)
		chain[i] = p->tox[d][i].t;
	proxy_engine_set_toxics(f->eng, p->id, (enum proxy_dir)d, chain, p->n_tox[d]);
}

/* The status of a failed create/start/update: a refusal of the policy (fault-policy.c) is the
 * client's, anything else (a bind error, an address that does not resolve) is 500 as in Go. */
static int err_status(const struct err *e)
{
	return e->code == EACCES ? 403 : e->code == ELOOP ? 400 : 500;
}

/* Starts a proxy's listener; on success listen becomes the bound address. Refuses an address
 * the policy does not allow, and a bound port that closes a loop (port 0 picked the upstream's). */
static int start(struct fault *f, struct fproxy *p, struct err *e)
{
	char bound[NET_ADDR_STRLEN];
	struct net_addr ba;
	size_t n = 0;
	struct err ignored;
	int r = fault__listen_check(f, p->listen, NULL, e);
	if (r < 0)
		return r;
	const char *c = strrchr(p->listen, ':');
	bool any_port = !c || !strcmp(c + 1, "0"); /* a fixed port was checked with its upstream */
	if ((r = proxy_engine_enable(f->eng, p->id, p->listen, bound, e)) < 0)
		return r;
	if (any_port && net_resolve_tcp(bound, true, &ba, 1, &n, &ignored) == 0 &&
	    (r = fault__route_check(f, p, &ba, p->upstream, e)) < 0) {
		proxy_engine_disable(f->eng, p->id);
		return r;
	}
	char *nl = strdup(bound);
	if (!nl) {
		proxy_engine_disable(f->eng, p->id);
		return err_set(e, ENOMEM, "out of memory");
	}
	free(p->listen);
	p->listen = nl;
	p->enabled = true;
	return 0;
}

/* The checks of a listen/upstream pair before anything changes (self: the proxy being
 * changed, NULL for a new one). A listen that does not resolve is left to the bind, which
 * fails with Go's 500, or to the enable of a disabled proxy. */
static int check_new(struct fault *f, const struct fproxy *self, const char *listen,
		     const char *upstream, struct err *e)
{
	struct net_addr la;
	int r = fault__listen_check(f, listen, &la, e);
	if (r == -EACCES)
		return r;
	const char *c = strrchr(listen, ':');
	bool fixed = r == 0 && c && strcmp(c + 1, "0");
	return fault__route_check(f, self, fixed ? &la : NULL, upstream, e);
}

static void stop(struct fault *f, struct fproxy *p)
{
	if (p->enabled)
		proxy_engine_disable(f->eng, p->id);
	p->enabled = false;
}

/* Creates a proxy in the engine (disabled) and starts it if asked; NULL with e on failure. */
static struct fproxy *create(struct fault *f, const char *name, const char *listen_in,
			     const char *upstream, bool enabled, struct err *e)
{
	struct fproxy *p = NULL;
	char bound[NET_ADDR_STRLEN], tmp[NET_ADDR_STRLEN];
	struct proxy_upstream up = { upstream, NULL };
	const char *listen;

	fault__loopback_listen(listen_in, tmp, sizeof tmp, &listen);
	if (check_new(f, NULL, listen, upstream, e) < 0)
		return NULL;
	p = calloc(1, sizeof *p);
	if (p) {
		p->name = strdup(name);
		p->listen = strdup(listen);
		p->upstream = strdup(upstream);
	}
	if (!p || !p->name || !p->listen || !p->upstream) {
		fproxy_free(p);
		err_set(e, ENOMEM, "out of memory");
		return NULL;
	}
	int64_t id = proxy_engine_add(f->eng, listen, &up, 1, false, bound, e);
	if (id < 0) {
		fproxy_free(p);
		return NULL;
	}
	p->id = id;
	if (enabled && start(f, p, e) < 0) {
		proxy_engine_remove(f->eng, p->id);
		fproxy_free(p);
		return NULL;
	}
	return p;
}

/* Adds p (sorted by name), or frees it and fails with -ENOMEM. */
static int insert(struct fault *f, struct fproxy *p)
{
	if (f->n == f->cap) {
		size_t nc = f->cap ? 2 * f->cap : 8;
		struct fproxy **nv = reallocarray(f->v, nc, sizeof *nv);
		if (!nv) {
			proxy_engine_remove(f->eng, p->id);
			fproxy_free(p);
			return -ENOMEM;
		}
		f->v = nv;
		f->cap = nc;
	}
	size_t i = f->n;
	while (i > 0 && strcmp(f->v[i - 1]->name, p->name) > 0) {
		f->v[i] = f->v[i - 1];
		i--;
	}
	f->v[i] = p;
	f->n++;
	return 0;
}

static void drop(struct fault *f, size_t idx)
{
	struct fproxy *p = f->v[idx];
	proxy_engine_remove(f->eng, p->id);
	fproxy_free(p);
	memmove(&f->v[idx], &f->v[idx + 1], (f->n - idx - 1) * sizeof *f->v);
	f->n--;
}

/* ---- handlers ---- */

static int proxies_list(struct fault *f, struct fault_reply *out)
{
	buf_addc(&out->body, '{');
	for (size_t i = 0; i < f->n; i++) {
		if (i)
			buf_addc(&out->body, ',');
		fault__json_str(&out->body, f->v[i]->name);
		buf_addc(&out->body, ':');
		fault__put_proxy(&out->body, f->v[i]);
	}
	buf_addc(&out->body, '}');
	return reply_ok(out, 200);
}

static int proxy_create(struct fault *f, const char *body, size_t n, struct fault_reply *out)
{
	json_t *j = NULL;
	struct fault_proxy_in in;
	struct err e;
	int r = fault__json_load(body, n, &j, &e);
	if (r == 0)
		r = fault__proxy_in(j, &in, &e);
	if (r < 0) {
		json_decref(j);
		return reply_err(out, 400, e.msg);
	}
	if (!in.name || !in.name[0])
		r = reply_err(out, 400, "missing required field: name");
	else if (!in.upstream || !in.upstream[0])
		r = reply_err(out, 400, "missing required field: upstream");
	else if (find(f, in.name, NULL))
		r = reply_err(out, 409, "proxy already exists");
	else if (f->n >= FAULT_PROXIES_MAX)
		r = reply_err(out, 507, "too many proxies");
	else {
		struct fproxy *p = create(f, in.name, in.listen ? in.listen : "", in.upstream,
					  in.enabled != 0, &e);
		if (!p) {
			r = reply_err(out, err_status(&e), e.msg);
		} else if (insert(f, p) < 0) {
			r = reply_err(out, 500, "out of memory");
		} else {
			fault__put_proxy(&out->body, p);
			r = reply_ok(out, 201);
		}
	}
	json_decref(j);
	return r;
}

/* Go compares net.ResolveTCPAddr(listen).String() with the bound address. */
static bool same_listen(const char *bound, const char *listen)
{
	struct net_addr a;
	size_t n = 0;
	struct err e;
	char text[NET_ADDR_STRLEN];
	if (net_resolve_tcp(listen, false, &a, 1, &n, &e) < 0)
		return false;
	net_addr_str((struct sockaddr *)&a.ss, text, sizeof text);
	return !strcmp(text, bound) && !str_ends(listen, ":0");
}

static void put_populate(struct buf *b, struct fproxy **done, size_t n, bool null_if_empty)
{
	buf_adds(b, "\"proxies\":");
	if (n == 0 && null_if_empty) {
		buf_adds(b, "null");
		return;
	}
	buf_addc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_addc(b, ',');
		fault__put_proxy(b, done[i]);
	}
	buf_addc(b, ']');
}

static int populate_fail(struct fault_reply *out, int status, const char *msg, struct fproxy **done,
			 size_t n)
{
	buf_reset(&out->body);
	buf_adds(&out->body, "{\"error\":");
	fault__json_str(&out->body, msg);
	buf_addf(&out->body, ",\"status\":%d,", status);
	put_populate(&out->body, done, n, true);
	buf_adds(&out->body, "}\n");
	out->status = status;
	out->json_type = false;
	return status;
}

static int populate(struct fault *f, const char *body, size_t n, struct fault_reply *out)
{
	json_t *j = NULL, *v;
	struct err e;
	size_t i, cnt;
	int r = fault__json_load(body, n, &j, &e);
	if (r == 0 && !json_is_array(j) && !json_is_null(j))
		r = err_set(&e, CAIRN_EINPUT,
			    "bad request body: json: cannot unmarshal %s into Go value of type []struct { proxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }",
			    json_is_object(j) ? "object" : json_is_string(j) ? "string" : "number");
	cnt = json_is_array(j) ? json_array_size(j) : 0;
	struct fault_proxy_in *ins = calloc(cnt ? cnt : 1, sizeof *ins);
	struct fproxy **done = calloc(cnt ? cnt : 1, sizeof *done);
	if (!ins || !done)
		r = err_set(&e, ENOMEM, "out of memory");
	for (i = 0; r == 0 && i < cnt; i++) { /* validate everything before creating anything */
		v = json_array_get(j, i);
		r = fault__proxy_in(v, &ins[i], &e);
		if (r == 0 && (!ins[i].name || !ins[i].name[0]))
			r = err_set(&e, CAIRN_EINPUT, "missing required field: name at proxy %zu", i + 1);
		else if (r == 0 && (!ins[i].upstream || !ins[i].upstream[0]))
			r = err_set(&e, CAIRN_EINPUT, "missing required field: upstream at proxy %zu",
				    i + 1);
		if (r == 0) { /* a listen address the policy refuses: nothing is created */
			char tmp[NET_ADDR_STRLEN];
			const char *l;
			fault__loopback_listen(ins[i].listen ? ins[i].listen : "", tmp, sizeof tmp, &l);
			if (fault__listen_check(f, l, NULL, &e) == -EACCES) {
				err_prefix(&e, "proxy %zu (%s)", i + 1, ins[i].name);
				r = -EACCES;
			} else {
				r = 0; /* a listen that does not resolve fails at its bind, as in Go */
			}
		}
	}
	if (r == 0 && f->n + cnt > FAULT_PROXIES_MAX)
		r = err_set(&e, CAIRN_EINPUT, "too many proxies");
	if (r < 0) {
		int st = e.code == ENOMEM ? 500 : e.code == EACCES ? 403 : 400;
		populate_fail(out, st, e.msg, NULL, 0);
		free(ins);
		free(done);
		json_decref(j);
		return st;
	}
	size_t nd = 0;
	int status = 201;
	for (i = 0; i < cnt; i++) {
		const char *listen = ins[i].listen ? ins[i].listen : "";
		size_t idx;
		struct fproxy *old = find(f, ins[i].name, &idx);
		if (old && !strcmp(old->upstream, ins[i].upstream) &&
		    (!strcmp(old->listen, listen) || same_listen(old->listen, listen))) {
			done[nd++] = old; /* kept untouched: toxics and enabled state survive */
			continue;
		}
		if (old)
			drop(f, idx);
		struct fproxy *p = create(f, ins[i].name, listen, ins[i].upstream, ins[i].enabled != 0,
					  &e);
		if (!p || (insert(f, p) < 0 && err_set(&e, ENOMEM, "out of memory"))) {
			status = err_status(&e);
			break;
		}
		done[nd++] = p;
	}
	if (status != 201) {
		populate_fail(out, status, e.msg, done, nd);
	} else {
		buf_addc(&out->body, '{');
		put_populate(&out->body, done, nd, false);
		buf_addc(&out->body, '}');
		reply_ok(out, 201);
	}
	free(done);
	free(ins);
	json_decref(j);
	return status;
}

static int proxy_update(struct fault *f, struct fproxy *p, const char *body, size_t n,
			struct fault_reply *out)
{
	json_t *j = NULL;
	struct fault_proxy_in in;
	struct err e;
	int r = fault__json_load(body, n, &j, &e);
	if (r == 0)
		r = fault__proxy_in(j, &in, &e);
	if (r < 0) {
		json_decref(j);
		return reply_err(out, 400, e.msg);
	}
	char tmp[NET_ADDR_STRLEN];
	const char *listen = in.listen ? in.listen : p->listen;
	const char *upstream = in.upstream ? in.upstream : p->upstream;
	bool enabled = in.enabled < 0 ? p->enabled : in.enabled != 0;
	if (in.listen)
		fault__loopback_listen(in.listen, tmp, sizeof tmp, &listen);
	r = 0;
	if ((strcmp(listen, p->listen) || strcmp(upstream, p->upstream)) &&
	    check_new(f, p, listen, upstream, &e) < 0) {
		json_decref(j);
		return reply_err(out, err_status(&e), e.msg); /* nothing changed */
	}
	if (strcmp(listen, p->listen) || strcmp(upstream, p->upstream)) {
		stop(f, p); /* drops every connection */
		if (strcmp(upstream, p->upstream)) {
			struct proxy_upstream up = { upstream, NULL };
			proxy_engine_set_upstreams(f->eng, p->id, &up, 1, &e);
		}
		char *nl = strdup(listen), *nu = strdup(upstream);
		if (!nl || !nu) {
			free(nl);
			free(nu);
			json_decref(j);
			return reply_err(out, 500, "out of memory");
		}
		free(p->listen);
		free(p->upstream);
		p->listen = nl;
		p->upstream = nu;
	}
	if (enabled != p->enabled) {
		if (enabled)
			r = start(f, p, &e);
		else
			stop(f, p);
	}
	json_decref(j);
	if (r < 0)
		return reply_err(out, err_status(&e), e.msg);
	fault__put_proxy(&out->body, p);
	return reply_ok(out, 200);
}

static struct ftoxic *find_toxic(struct fproxy *p, const char *name, int *out_d, size_t *out_i)
{
	for (int d = 0; d < 2; d++)
		for (size_t i = 0; i < p->n_tox[d]; i++)
			if (!strcmp(p->tox[d][i].t.name, name)) {
				*out_d = d;
				*out_i = i;
				return &p->tox[d][i];
			}
	return NULL;
}

/* Toxiproxy's "invalid toxic type", then what would have been valid. */
static int bad_type(struct fault_reply *out, const char *tname)
{
	const char *types[TOXIC__COUNT + 1];
	char list[256];
	size_t o = 0;
	struct err e;
	for (int k = 0; k < TOXIC__COUNT; k++) {
		types[k] = proxy_toxic_type_name((enum proxy_toxic_type)((k + 1) % TOXIC__COUNT));
		o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k ? ", " : "", types[k]);
	}
	types[TOXIC__COUNT] = NULL;
	const char *near = str_nearest(tname, types);
	err_set(&e, CAIRN_EINPUT, "invalid toxic type \"%.64s\"; valid types: %s%s%s%s%s", tname,
		list, near ? "; did you mean \"" : "", near ? near : "", near ? "\"?" : "",
		!strcmp(tname, "down") ? "; down is not a toxic: disable the proxy (enabled: false, "
					 "cairn fault toggle)"
				       : "");
	return reply_err(out, 400, e.msg);
}

static int toxic_create(struct fault *f, struct fproxy *p, const char *body, size_t n,
			struct fault_reply *out)
{
	json_t *j = NULL;
	struct fault_toxic_in in;
	struct err e;
	enum proxy_dir dir;
	enum proxy_toxic_type type;
	int d;
	size_t k;
	char name[PROXY_TOXIC_NAME_MAX], *sdup = NULL;
	int r = fault__json_load(body, n, &j, &e);
	if (r == 0)
		r = fault__toxic_in(j, &in, &e);
	if (r < 0) {
		json_decref(j);
		return reply_err(out, 400, e.msg);
	}
	const char *stream = in.stream ? in.stream : "downstream";
	const char *tname = in.type ? in.type : "";
	struct proxy_toxic t = { .toxicity = in.has_toxicity ? in.toxicity : 1.0f };
	if (fault__stream_parse(stream, &dir) < 0)
		r = reply_err(out, 400, "stream was invalid, can be either upstream or downstream");
	else if (in.name && in.name[0] && strlen(in.name) >= sizeof name)
		r = reply_err(out, 400, "bad request body: toxic name too long");
	else if (snprintf(name, sizeof name, "%s", in.name && in.name[0] ? in.name : "") ,
		 !name[0] && snprintf(name, sizeof name, "%s_%s", tname, stream) >= (int)sizeof name)
		r = reply_err(out, 400, "bad request body: toxic name too long");
	else if (proxy_toxic_type_parse(tname, &type) < 0)
		r = bad_type(out, tname);
	else if (find_toxic(p, name, &d, &k))
		r = reply_err(out, 409, "toxic already exists");
	else if (fault__attrs_in(in.attributes, type, t.a, &e) < 0)
		r = reply_err(out, 400, e.msg);
	else if (p->n_tox[dir] >= PROXY_TOXICS_MAX)
		r = reply_err(out, 400, "too many toxics in this direction");
	else if (!(sdup = strdup(stream)))
		r = reply_err(out, 500, "out of memory");
	else {
		struct ftoxic *ft = &p->tox[dir][p->n_tox[dir]++];
		memcpy(t.name, name, sizeof name);
		t.type = type;
		ft->t = t;
		ft->stream = sdup;
		ft->dir = dir;
		push_chain(f, p, dir);
		fault__put_toxic(&out->body, ft);
		r = reply_ok(out, 200);
	}
	json_decref(j);
	return r;
}

static int toxic_update(struct fault *f, struct fproxy *p, struct ftoxic *t, const char *body,
			size_t n, struct fault_reply *out)
{
	json_t *j = NULL;
	struct fault_toxic_in in;
	struct err e;
	int64_t a[3] = { t->t.a[0], t->t.a[1], t->t.a[2] };
	int r = fault__json_load(body, n, &j, &e);
	if (r == 0)
		r = fault__toxic_in(j, &in, &e);
	if (r == 0)
		r = fault__attrs_in(in.attributes, t->t.type, a, &e); /* merged into the old values */
	if (r < 0) {
		json_decref(j);
		return reply_err(out, 400, e.msg);
	}
	memcpy(t->t.a, a, sizeof a);
	if (in.has_toxicity)
		t->t.toxicity = in.toxicity;
	push_chain(f, p, t->dir);
	fault__put_toxic(&out->body, t);
	json_decref(j);
	return reply_ok(out, 200);
}

static void toxic_remove(struct fault *f, struct fproxy *p, int d, size_t i)
{
	free(p->tox[d][i].stream);
	memmove(&p->tox[d][i], &p->tox[d][i + 1], (p->n_tox[d] - i - 1) * sizeof p->tox[d][0]);
	p->n_tox[d]--;
	push_chain(f, p, d);
}

static int reset(struct fault *f, struct fault_reply *out)
{
	struct err e;
	for (size_t i = 0; i < f->n; i++) {
		struct fproxy *p = f->v[i];
		if (!p->enabled && start(f, p, &e) < 0)
			return reply_err(out, 500, e.msg);
		for (int d = 0; d < 2; d++) {
			if (!p->n_tox[d])
				continue;
			for (size_t k = 0; k < p->n_tox[d]; k++)
				free(p->tox[d][k].stream);
			p->n_tox[d] = 0;
			push_chain(f, p, d);
		}
	}
	return reply_ok(out, 204);
}

void fault_set_metrics(struct fault *f, bool on)
{
	f->metrics = on;
}

/* ---- routing (gorilla/mux: {name} is one path segment) ---- */

static size_t split(const char *path, char segs[4][PROXY_TOXIC_NAME_MAX * 2])
{
	size_t n = 0;
	const char *p = path;
	if (*p != '/')
		return 99;
	while (*p == '/') {
		const char *s = ++p;
		while (*p && *p != '/')
			p++;
		if (n == 4 || (size_t)(p - s) >= sizeof segs[0])
			return 99;
		if (p == s) /* empty segment ("/proxies/" or "//") matches no route */
			return 99;
		memcpy(segs[n], s, (size_t)(p - s));
		segs[n][p - s] = 0;
		n++;
	}
	return n;
}

static int not_found(struct fault_reply *out)
{
	buf_reset(&out->body);
	buf_adds(&out->body, "404 page not found\n");
	out->status = 404;
	out->json_type = false;
	return 404;
}

static int bad_method(struct fault_reply *out)
{
	buf_reset(&out->body);
	out->status = 405;
	out->json_type = false;
	return 405;
}

static bool is(const char *m, const char *want)
{
	return !strcmp(m, want);
}

static int route(struct fault *f, const char *m, const char *path, const char *body, size_t n,
		 struct fault_reply *out)
{
	char seg[4][PROXY_TOXIC_NAME_MAX * 2];
	size_t ns = split(path, seg);

	if (ns == 1 && !strcmp(seg[0], "version")) {
		if (!is(m, "GET"))
			return bad_method(out);
		buf_adds(&out->body, "{\"version\": \"" FAULT_VERSION "\"}\n");
		return reply_ok(out, 200);
	}
	if (ns == 1 && !strcmp(seg[0], "metrics") && f->metrics)
		return is(m, "GET") ? fault__metrics(f, out) : bad_method(out);
	if (ns == 1 && !strcmp(seg[0], "reset"))
		return is(m, "POST") ? reset(f, out) : bad_method(out);
	if (ns == 1 && !strcmp(seg[0], "populate"))
		return is(m, "POST") ? populate(f, body, n, out) : bad_method(out);
	if (ns == 0 || ns > 4 || strcmp(seg[0], "proxies") || (ns == 3 && strcmp(seg[2], "toxics")) ||
	    (ns == 4 && strcmp(seg[2], "toxics")))
		return not_found(out);
	if (ns == 1) {
		if (is(m, "GET"))
			return proxies_list(f, out);
		return is(m, "POST") ? proxy_create(f, body, n, out) : bad_method(out);
	}
	bool known = ns == 2 ? (is(m, "GET") || is(m, "POST") || is(m, "PATCH") || is(m, "DELETE"))
		   : ns == 3 ? (is(m, "GET") || is(m, "POST"))
			     : (is(m, "GET") || is(m, "POST") || is(m, "PATCH") || is(m, "DELETE"));
	if (!known)
		return bad_method(out);
	size_t idx;
	struct fproxy *p = find(f, seg[1], &idx);
	if (!p)
		return reply_err(out, 404, "proxy not found");
	if (ns == 2) {
		if (is(m, "GET")) {
			fault__put_proxy(&out->body, p);
			return reply_ok(out, 200);
		}
		if (is(m, "DELETE")) {
			drop(f, idx);
			return reply_ok(out, 204);
		}
		return proxy_update(f, p, body, n, out);
	}
	if (ns == 3) {
		if (is(m, "GET")) {
			fault__put_toxics(&out->body, p);
			return reply_ok(out, 200);
		}
		return toxic_create(f, p, body, n, out);
	}
	int d;
	size_t ti;
	struct ftoxic *t = find_toxic(p, seg[3], &d, &ti);
	if (!t)
		return reply_err(out, 404, "toxic not found");
	if (is(m, "GET")) {
		fault__put_toxic(&out->body, t);
		return reply_ok(out, 200);
	}
	if (is(m, "DELETE")) {
		toxic_remove(f, p, d, ti);
		return reply_ok(out, 204);
	}
	return toxic_update(f, p, t, body, n, out);
}

void fault_handle(struct fault *f, const char *method, const char *path, const char *body,
		  size_t body_len, struct fault_reply *out)
{
	buf_init(&out->body, 64u << 20);
	out->status = 500;
	out->json_type = false;
	pthread_mutex_lock(&f->mu);
	route(f, method, path, body ? body : "", body ? body_len : 0, out);
	pthread_mutex_unlock(&f->mu);
}

int fault_load_config(struct fault *f, const char *path, struct err *e)
{
	struct buf b;
	struct fault_reply out;
	buf_init(&b, FAULT_BODY_MAX);
	int r = fs_read_file(path, &b, e);
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	fault_handle(f, "POST", "/populate", b.data, b.len, &out);
	buf_done(&b);
	if (out.status != 201) {
		r = err_set(e, CAIRN_EINPUT, "%s: populate failed (HTTP %d): %s", path, out.status,
			    buf_str(&out.body));
	}
	buf_done(&out.body);
	return r;
}
