/* agent proxy: the proxy in front of each app's instances on this host — created, switched and
 * stopped through PUT /v1/apps/{app}/proxy, read (with per-release traffic counters) through
 * GET, persisted in <state>/agent/proxies.json so that an agent restart brings it back on the
 * same address. Mode http is the per-request reverse proxy (hproxy); mode tcp the byte engine.
 * hproxy_free drains requests in flight for up to 2 s: a DELETE, a change of mode or the
 * agent's own shutdown may hold its loop that long (rare, and bounded). */
#include "agent/agent-internal.h"

#include "proxy/proxy.h"

#include <errno.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_DEFAULT_MS 60000

struct app_proxy {
	struct app_proxy *next;
	char app[AGENT_NAME_MAX + 1];
	char listen[NET_ADDR_STRLEN]; /* the bound address: kept across agent restarts */
	bool http, stopped;
	json_t *upstreams; /* owned: [{"addr","release"}] */
	int64_t switched_at; /* unix ms of the last upstream change */
	int64_t switch_us;   /* how long the last change took to reach every loop */
	struct hproxy *hp;   /* http */
	int64_t eng_id;      /* tcp */
};

static struct app_proxy *find(struct agent *ag, const char *app)
{
	for (struct app_proxy *p = ag->proxies; p; p = p->next)
		if (!strcmp(p->app, app))
			return p;
	return NULL;
}

bool agent__proxy_port(const struct agent *ag, int port)
{
	for (const struct app_proxy *p = ag->proxies; p; p = p->next) {
		const char *c = strrchr(p->listen, ':');
		if (c && atoi(c + 1) == port)
			return true;
	}
	return false;
}

/* Whether two listen addresses (HOST:PORT, [V6]:PORT, :PORT) would take the same socket: the
 * same port, and the same host or either one every interface. */
static bool wildcard_host(const char *h, size_t n)
{
	return n == 0 || (n == 7 && !strncmp(h, "0.0.0.0", 7)) || (n == 4 && !strncmp(h, "[::]", 4)) ||
	       (n == 1 && h[0] == '*');
}

static bool listen_clash(const char *a, const char *b)
{
	const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
	if (!ca || !cb || atoi(ca + 1) == 0 || atoi(ca + 1) != atoi(cb + 1))
		return false;
	size_t na = (size_t)(ca - a), nb = (size_t)(cb - b);
	return wildcard_host(a, na) || wildcard_host(b, nb) || (na == nb && !strncmp(a, b, na));
}

/* Another app's proxy on this host that holds (or, stopped, keeps) listen's port, or NULL. */
static const struct app_proxy *port_owner(const struct agent *ag, const char *app,
					  const char *listen)
{
	for (const struct app_proxy *p = ag->proxies; p; p = p->next)
		if (strcmp(p->app, app) && listen_clash(p->listen, listen))
			return p;
	return NULL;
}

/* ---- backends ------------------------------------------------------------------------------ */

static int ups_of(json_t *arr, struct proxy_upstream *ups)
{
	size_t i;
	json_t *u;
	json_array_foreach(arr, i, u)
	{
		ups[i].addr = json_string_value(json_object_get(u, "addr"));
		ups[i].label = json_string_value(json_object_get(u, "release"));
	}
	return (int)json_array_size(arr);
}

static int engine(struct agent *ag, struct err *e)
{
	struct proxy_engine_opts o = {.threads = 1};
	if (ag->eng)
		return 0;
	return proxy_engine_new(&o, &ag->eng, e);
}

static int be_open(struct agent *ag, struct app_proxy *p, const char *listen, struct err *e)
{
	struct proxy_upstream ups[AGENT_PROXY_UPS_MAX];
	int n = ups_of(p->upstreams, ups);
	char bound[NET_ADDR_STRLEN];
	int r;
	if (p->http) {
		struct hproxy_opts o = {.threads = 1, .drain_timeout_ms = 2000};
		if ((r = hproxy_new(&o, listen, bound, &p->hp, e)) < 0)
			return r;
		if ((r = hproxy_set_upstreams(p->hp, ups, (size_t)n, e)) < 0)
			return r;
		if (p->stopped)
			hproxy_set_stopped(p->hp, true);
	} else {
		if ((r = engine(ag, e)) < 0)
			return r;
		int64_t id = proxy_engine_add(ag->eng, listen, ups, (size_t)n, !p->stopped, bound, e);
		if (id < 0)
			return (int)id;
		p->eng_id = id;
		if (p->stopped)
			snprintf(bound, sizeof(bound), "%s", listen);
	}
	snprintf(p->listen, sizeof(p->listen), "%s", bound);
	return 0;
}

static void be_close(struct agent *ag, struct app_proxy *p)
{
	if (p->hp || (p->eng_id > 0 && !p->stopped))
		agent__keeper_drop(ag, p->listen); /* its kept copy goes first: the port is free */
	if (p->hp)
		hproxy_free(p->hp);
	p->hp = NULL;
	if (p->eng_id > 0)
		proxy_engine_remove(ag->eng, p->eng_id);
	p->eng_id = 0;
}

static int be_switch(struct agent *ag, struct app_proxy *p, json_t *upstreams, struct err *e)
{
	struct proxy_upstream ups[AGENT_PROXY_UPS_MAX];
	int n = ups_of(upstreams, ups), r;
	int64_t t0 = time_mono_ns();
	if (p->hp)
		r = hproxy_set_upstreams(p->hp, ups, (size_t)n, e);
	else
		r = proxy_engine_set_upstreams(ag->eng, p->eng_id, ups, (size_t)n, e);
	if (r < 0)
		return r;
	p->switch_us = (time_mono_ns() - t0) / 1000;
	p->switched_at = time_now_ns() / 1000000;
	json_decref(p->upstreams);
	p->upstreams = json_incref(upstreams);
	return 0;
}

static int be_stop(struct agent *ag, struct app_proxy *p, bool stopped, struct err *e)
{
	if (p->stopped == stopped)
		return 0;
	if (p->hp) {
		hproxy_set_stopped(p->hp, stopped);
	} else if (stopped) {
		agent__keeper_drop(ag, p->listen); /* else the kernel would still queue clients */
		proxy_engine_disable(ag->eng, p->eng_id);
	} else {
		char bound[NET_ADDR_STRLEN];
		int r = proxy_engine_enable(ag->eng, p->eng_id, p->listen, bound, e);
		if (r < 0)
			return r;
	}
	p->stopped = stopped;
	return 0;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static json_t *stats_json(const struct proxy_http_stats *s)
{
	static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
	json_t *st = json_object(), *hist = json_array();
	for (int i = 0; i < 6; i++)
		json_object_set_new(st, cls[i], json_integer((json_int_t)s->status[i]));
	int last = -1;
	for (int i = 0; i < PROXY_HTTP_BUCKETS; i++)
		if (s->hist[i])
			last = i;
	for (int i = 0; i <= last; i++)
		json_array_append_new(hist, json_integer((json_int_t)s->hist[i]));
	return json_pack("{s:I,s:I,s:o,s:f,s:f,s:f,s:f,s:o}", "requests", (json_int_t)s->requests,
			 "parse_errors", (json_int_t)s->parse_errors, "status", st, "p50_ms",
			 proxy_http_percentile_us(s, 50) / 1000.0, "p90_ms",
			 proxy_http_percentile_us(s, 90) / 1000.0, "p99_ms",
			 proxy_http_percentile_us(s, 99) / 1000.0, "p999_ms",
			 proxy_http_percentile_us(s, 99.9) / 1000.0, "hist", hist);
}

static json_t *traffic_json(struct agent *ag, struct app_proxy *p, int64_t window_ms)
{
	json_t *arr = json_array();
	char labels[16][PROXY_TOXIC_NAME_MAX];
	size_t n = 0;
	struct proxy_stats ps;
	bool have_ps = false;
	if (p->hp) {
		n = hproxy_labels(p->hp, labels, 16);
	} else if (p->eng_id > 0 && proxy_engine_stats(ag->eng, p->eng_id, &ps) == 0) {
		have_ps = true;
		for (size_t i = 0; i < ps.n_labels && n < 16; i++)
			snprintf(labels[n++], PROXY_TOXIC_NAME_MAX, "%s", ps.labels[i].label);
	}
	for (size_t i = 0; i < n; i++) {
		struct proxy_http_stats st;
		json_t *o = json_pack("{s:s}", "release", labels[i]);
		if (p->hp) {
			json_object_set_new(o, "active", json_integer(hproxy_inflight(p->hp, labels[i])));
			if (hproxy_stats(p->hp, labels[i], 0, &st) == 0)
				json_object_set_new(o, "total", stats_json(&st));
			if (hproxy_stats(p->hp, labels[i], window_ms, &st) == 0)
				json_object_set_new(o, "window", stats_json(&st));
		}
		for (size_t k = 0; have_ps && k < ps.n_labels; k++) {
			const struct proxy_label_stats *l = &ps.labels[k];
			if (strcmp(l->label, labels[i]))
				continue;
			json_object_set_new(o, "active", json_integer((json_int_t)l->conns_active));
			json_object_set_new(o, "tcp",
					    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "conns",
						      (json_int_t)l->conns_total, "active",
						      (json_int_t)l->conns_active, "connect_failures",
						      (json_int_t)l->connect_failures, "upstream_resets",
						      (json_int_t)l->upstream_resets, "bytes_up",
						      (json_int_t)l->bytes_up, "bytes_down",
						      (json_int_t)l->bytes_down));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *proxy_json(struct agent *ag, struct app_proxy *p, int64_t window_ms)
{
	char ts[40] = "";
	if (p->switched_at)
		time_fmt_rfc3339(p->switched_at / 1000, ts, sizeof(ts));
	return json_pack("{s:s,s:s,s:s,s:b,s:O,s:s?,s:I,s:I,s:I,s:o}", "app", p->app, "listen",
			 p->listen, "mode", p->http ? "http" : "tcp", "stopped", p->stopped,
			 "upstreams", p->upstreams, "switched_at", ts[0] ? ts : NULL,
			 "switched_at_ms", (json_int_t)p->switched_at, "switch_us",
			 (json_int_t)p->switch_us, "window_ms", (json_int_t)window_ms, "releases",
			 traffic_json(ag, p, window_ms));
}

/* ---- persistence --------------------------------------------------------------------------- */

static int save(struct agent *ag, struct err *e)
{
	json_t *apps = json_object();
	for (struct app_proxy *p = ag->proxies; p; p = p->next)
		json_object_set_new(apps, p->app,
				    json_pack("{s:s,s:s,s:b,s:O}", "listen", p->listen, "mode",
					      p->http ? "http" : "tcp", "stopped", p->stopped,
					      "upstreams", p->upstreams));
	json_t *doc = json_pack("{s:i,s:o}", "version", 1, "apps", apps);
	char *txt = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (!txt)
		return err_set(e, ENOMEM, "out of memory");
	int r = fs_write_atomic(ag->proxies_path, txt, strlen(txt), 0600, e);
	free(txt);
	return r;
}

static void proxy_free(struct agent *ag, struct app_proxy *p)
{
	be_close(ag, p);
	json_decref(p->upstreams);
	free(p);
}

static int create(struct agent *ag, const char *app, const struct proxy_req *rq,
		  struct app_proxy **out, struct err *e)
{
	struct app_proxy *p = calloc(1, sizeof(*p));
	if (!p)
		return err_set(e, ENOMEM, "out of memory");
	snprintf(p->app, sizeof(p->app), "%s", app);
	p->http = rq->http;
	p->stopped = rq->stopped;
	p->upstreams = json_incref(rq->upstreams);
	p->switched_at = time_now_ns() / 1000000;
	int r = be_open(ag, p, rq->listen, e);
	if (r < 0) {
		err_prefix(e, "proxy of %s on %s", app, rq->listen);
		proxy_free(ag, p);
		return r;
	}
	p->next = ag->proxies;
	ag->proxies = p;
	*out = p;
	return 0;
}

int agent_proxies_load(struct agent *ag, struct err *e)
{
	struct buf b;
	json_error_t je;
	const char *app;
	json_t *doc, *v;
	int r;
	if (!ag->proxies_path)
		ag->proxies_path = fs_join(ag->state_dir, "agent/proxies.json");
	buf_init(&b, 16 * 1024 * 1024);
	if ((r = fs_read_file(ag->proxies_path, &b, e)) < 0) {
		buf_done(&b);
		if (r == -ENOENT) {
			*e = (struct err){0};
			return 0;
		}
		return r;
	}
	doc = json_loadb(b.data ? b.data : "", b.len, 0, &je);
	buf_done(&b);
	if (!doc)
		return err_set(e, CAIRN_ECORRUPT, "%s: %s (line %d); move it away to start without "
			       "proxies", ag->proxies_path, je.text, je.line);
	json_object_foreach(json_object_get(doc, "apps"), app, v)
	{
		struct proxy_req rq = {0};
		struct app_proxy *p;
		char *txt = json_dumps(v, JSON_COMPACT);
		struct err pe = {0};
		r = txt && agent_name_ok(app) ? agent_parse_proxy(txt, strlen(txt), &rq, &pe)
					      : err_set(&pe, CAIRN_ECORRUPT, "bad entry");
		free(txt);
		if (r == 0 && (r = create(ag, app, &rq, &p, &pe)) == 0)
			log_info("agent", "proxy of %s back on %s (%zu upstreams%s)", app, p->listen,
				 json_array_size(p->upstreams), p->stopped ? ", stopped" : "");
		else
			log_error("agent", "%s: proxy of %s not restored: %s", ag->proxies_path, app,
				  pe.msg);
		proxy_req_done(&rq);
	}
	json_decref(doc);
	return 0;
}

void agent_proxies_free(struct agent *ag)
{
	while (ag->proxies) {
		struct app_proxy *p = ag->proxies;
		ag->proxies = p->next;
		proxy_free(ag, p);
	}
	proxy_engine_free(ag->eng);
	ag->eng = NULL;
	free(ag->proxies_path);
	ag->proxies_path = NULL;
}

bool agent_proxy_stop_traffic(struct agent *ag, const char *app)
{
	struct app_proxy *p = find(ag, app);
	struct err e;
	if (!p)
		return false;
	if (be_stop(ag, p, true, &e) < 0 || save(ag, &e) < 0)
		log_error("agent", "emergency stop of %s's proxy: %s", app, e.msg);
	return true;
}

/* ---- the API ------------------------------------------------------------------------------- */

static int64_t query_window(struct evhttp_request *req)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq params;
	int64_t w = WINDOW_DEFAULT_MS;
	if (q && evhttp_parse_query_str(q, &params) == 0) {
		const char *v = evhttp_find_header(&params, "window_ms");
		char *end;
		long long x = v ? strtoll(v, &end, 10) : -1;
		if (v && !*end && x >= 0 && x <= 3600000)
			w = x;
		evhttp_clear_headers(&params);
	}
	return w;
}

static void handle_put(struct agent *ag, struct evhttp_request *req, const char *app)
{
	size_t n = 0;
	char *body = agent__body_of(req, &n);
	struct proxy_req rq = {0};
	struct app_proxy *p = find(ag, app);
	struct err e = {0};
	int r;
	if (!body) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	r = agent_parse_proxy(body, n, &rq, &e);
	free(body);
	if (r < 0) {
		agent_reply_err(req, &e);
		return;
	}
	/* one owner per port: SO_REUSEPORT is never used, but a tcp proxy that is stopped has no
	 * socket, and the kernel's "in use" does not say whose it is */
	const struct app_proxy *owner = port_owner(ag, app, rq.listen);
	if (owner) {
		agent_reply_error(req, 409, "conflict",
				  "listen tcp %s: address already in use: app %s's proxy holds %s on "
				  "this host; give %s another listen in its cairn.yml",
				  rq.listen, owner->app, owner->listen, app);
		proxy_req_done(&rq);
		return;
	}
	/* same mode and address (or port 0 = keep the bound one): switch in place */
	bool same = p && p->http == rq.http &&
		    (!strcmp(p->listen, rq.listen) || str_ends(rq.listen, ":0"));
	if (p && !same) {
		struct app_proxy **pp = &ag->proxies;
		while (*pp != p)
			pp = &(*pp)->next;
		*pp = p->next;
		proxy_free(ag, p);
		p = NULL;
	}
	if (!p)
		r = create(ag, app, &rq, &p, &e);
	else if ((r = be_switch(ag, p, rq.upstreams, &e)) == 0)
		r = be_stop(ag, p, rq.stopped, &e);
	proxy_req_done(&rq);
	if (r == 0)
		r = save(ag, &e);
	if (r < 0) {
		agent_reply_err(req, &e);
		return;
	}
	log_info("agent", "proxy of %s on %s: %zu upstreams%s (switch %lld us)", app, p->listen,
		 json_array_size(p->upstreams), p->stopped ? ", stopped" : "",
		 (long long)p->switch_us);
	agent_reply_json(req, 200, proxy_json(ag, p, WINDOW_DEFAULT_MS));
}

void agent_proxy_route(struct agent *ag, struct evhttp_request *req, const char *app)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct app_proxy *p = find(ag, app);
	struct err e = {0};
	if (m == EVHTTP_REQ_PUT) {
		handle_put(ag, req, app);
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_DELETE) {
		agent_reply_error(req, 405, "input", "method not allowed on /v1/apps/%s/proxy", app);
		return;
	}
	if (!p) {
		agent_reply_error(req, 404, "not_found",
				  "app %s has no proxy on this host (PUT /v1/apps/%s/proxy makes one)",
				  app, app);
		return;
	}
	if (m == EVHTTP_REQ_GET) {
		agent_reply_json(req, 200, proxy_json(ag, p, query_window(req)));
		return;
	}
	struct app_proxy **pp = &ag->proxies;
	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	json_t *ans = json_pack("{s:s,s:s}", "app", app, "removed", p->listen);
	proxy_free(ag, p);
	if (save(ag, &e) < 0) {
		json_decref(ans);
		agent_reply_err(req, &e);
		return;
	}
	agent_reply_json(req, 200, ans);
}
