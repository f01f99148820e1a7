/* controller exec-traffic: the steps of a deploy that move and watch user traffic through a
 * host's proxy — switch (point the proxy at a release's instances), bake (watch the new
 * release's live traffic and instances against the gates, failing at once on a clear breach),
 * switch back on rollback, and the evidence a failed step leaves (the new instances' last log
 * lines). The proxy itself lives in the host's agent (docs/agent.md, /v1/apps/{app}/proxy). */
#include "controller/controller-internal.h"

#include "config/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BAKE_POLL_MS 100
#define EVIDENCE_LINES 8
#define EVIDENCE_LINE_MAX 200

static void nap_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* GET the app's proxy on the host: 1 and *out, or 0 when it has none. */
static int proxy_get(struct executor *x, const struct exec_job *j, const char *host,
		     json_t **out, struct err *e)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/apps/%s/proxy", j->app);
	int r = exec__agent_call(x, host, "GET", path, NULL, 0, out, e);
	if (r == -CAIRN_ENOTFOUND) {
		*e = (struct err){0};
		*out = NULL;
		return 0;
	}
	return r < 0 ? r : 1;
}

int traffic_point(struct executor *x, const struct exec_job *j, const char *host,
		  const char *release, json_t **out_proxy, struct err *e)
{
	const struct config *cfg = j->cfg;
	json_t *insts = NULL, *v, *ups = json_array(), *ans = NULL;
	char path[256], listen[NET_ADDR_STRLEN + 8];
	size_t i;
	int r = 0;

	*out_proxy = NULL;
	if (release[0] && (r = exec__instances(x, j, host, release, false, &insts, e)) < 0)
		goto out;
	json_array_foreach(insts, i, v)
	{
		char addr[64];
		const char *st = json_string_value(json_object_get(v, "state"));
		if (st && strcmp(st, "running") && strcmp(st, "starting"))
			continue;
		snprintf(addr, sizeof(addr), "127.0.0.1:%lld",
			 (long long)json_integer_value(json_object_get(v, "port")));
		json_array_append_new(ups, json_pack("{s:s,s:s}", "addr", addr, "release", release));
	}
	if (!release[0]) { /* nothing to point at: only an existing proxy is emptied */
		json_t *cur = NULL;
		if ((r = proxy_get(x, j, host, &cur, e)) <= 0)
			goto out;
		json_decref(cur);
	}
	if (strchr(cfg->listen_host, ':'))
		snprintf(listen, sizeof(listen), "[%s]:%d", cfg->listen_host, cfg->listen_port);
	else
		snprintf(listen, sizeof(listen), "%s:%d", cfg->listen_host, cfg->listen_port);
	snprintf(path, sizeof(path), "/v1/apps/%s/proxy", j->app);
	json_t *body = json_pack("{s:s,s:s,s:O,s:b}", "listen", listen, "mode",
				 cfg->health.http ? "http" : "tcp", "upstreams", ups, "stopped", 0);
	if ((r = exec__agent_call(x, host, "PUT", path, body, 0, &ans, e)) == 0)
		*out_proxy = ans;
out:
	json_decref(insts);
	json_decref(ups);
	return r;
}

/* The counters of one release in a proxy answer ("total" or "window"); zeros when absent. */
static void traffic_of(json_t *proxy, const char *release, const char *which,
		       struct gate_traffic *out)
{
	json_t *v, *rel = NULL;
	size_t i;
	memset(out, 0, sizeof(*out));
	json_array_foreach(json_object_get(proxy, "releases"), i, v)
		if (!strcmp(json_string_value(json_object_get(v, "release")) ?: "", release))
			rel = json_object_get(v, which);
	if (!rel)
		return;
	out->requests = (uint64_t)json_integer_value(json_object_get(rel, "requests"));
	out->errors = (uint64_t)json_integer_value(
	    json_object_get(json_object_get(rel, "status"), "5xx"));
	json_array_foreach(json_object_get(rel, "hist"), i, v)
		if (i < GATE_BUCKETS)
			out->hist[i] = (uint64_t)json_integer_value(v);
}

static void traffic_sub(struct gate_traffic *a, const struct gate_traffic *b)
{
	a->requests = a->requests > b->requests ? a->requests - b->requests : 0;
	a->errors = a->errors > b->errors ? a->errors - b->errors : 0;
	for (int i = 0; i < GATE_BUCKETS; i++)
		a->hist[i] = a->hist[i] > b->hist[i] ? a->hist[i] - b->hist[i] : 0;
}

/* A new instance that is gone, not running, or restarted since the bake began. */
static int crash_check(json_t *before, json_t *now, char *why, size_t n)
{
	json_t *b, *c;
	size_t i, k;
	json_array_foreach(before, i, b)
	{
		const char *id = json_string_value(json_object_get(b, "id"));
		json_t *found = NULL;
		json_array_foreach(now, k, c)
			if (!strcmp(json_string_value(json_object_get(c, "id")) ?: "", id ?: ""))
				found = c;
		const char *st = found ? json_string_value(json_object_get(found, "state")) : "gone";
		json_int_t r0 = json_integer_value(json_object_get(b, "restarts"));
		json_int_t r1 = found ? json_integer_value(json_object_get(found, "restarts")) : r0;
		if (!found || strcmp(st ?: "", "running") || r1 > r0) {
			const char *le = found ? json_string_value(json_object_get(found, "last_exit"))
					       : NULL;
			snprintf(why, n, "crash gate: instance %s of the new release %s during the bake "
				 "(state %s, %lld restarts%s%s)", id ?: "?",
				 r1 > r0 ? "exited" : "stopped running", st ?: "?", (long long)r1,
				 le ? "; last exit: " : "", le ? le : "");
			return 1;
		}
	}
	return 0;
}

static json_t *traffic_json(const struct gate_traffic *t)
{
	return json_pack("{s:I,s:I,s:f,s:f}", "requests", (json_int_t)t->requests, "errors_5xx",
			 (json_int_t)t->errors, "p50_ms", gate_percentile_ms(t->hist, 50), "p99_ms",
			 gate_percentile_ms(t->hist, 99));
}

static void bake_detail(struct buf *detail, const char *verdict, const char *why, int64_t ms,
			const struct gate_traffic *nt, const struct gate_traffic *base)
{
	json_t *d = json_pack("{s:s,s:s,s:I,s:o,s:o}", "verdict", verdict, "reason", why, "baked_ms",
			      (json_int_t)ms, "new", traffic_json(nt), "previous", traffic_json(base));
	char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	if (txt)
		buf_adds(detail, txt);
	free(txt);
}

int traffic_drain(struct executor *x, const struct exec_job *j, const char *host,
		  const char *release, bool other, int64_t timeout_ms, struct err *e)
{
	int64_t t0 = time_mono_ns() / 1000000;
	for (;;) {
		json_t *proxy = NULL, *v;
		size_t i;
		json_int_t active = 0;
		int r = proxy_get(x, j, host, &proxy, e);
		if (r <= 0)
			return r;
		json_array_foreach(json_object_get(proxy, "releases"), i, v)
		{
			const char *rel = json_string_value(json_object_get(v, "release")) ?: "";
			if ((strcmp(rel, release) == 0) != other)
				active += json_integer_value(json_object_get(v, "active"));
		}
		json_decref(proxy);
		if (active == 0)
			return 0;
		if (time_mono_ns() / 1000000 - t0 >= timeout_ms) {
			log_warn("controller", "job %lld on %s: %lld requests still in flight after %lld ms "
				 "of drain; stopping anyway", (long long)j->id, host, (long long)active,
				 (long long)timeout_ms);
			return 0;
		}
		nap_ms(20);
	}
}

/* What the bake sent itself: the acceptance checks repeated against the new instances when users
 * sent too few requests to judge — and against the previous release's instances (still warm
 * until cleanup) when the ratio gate lacks a baseline — bounded in time by
 * max(rollout.bake, TOPUP_MIN_MS) and in count by what the gates still need. */
#define TOPUP_MIN_MS 10000
#define TOPUP_BATCH 4 /* checks between two looks at the proxy and the instances */

struct topup {
	struct gate_traffic gen; /* the answers to the checks the bake sent */
	size_t next;             /* round robin over instances × checks */
	char first_fail[256];    /* the first failed check, for the reason */
};

static int topup_send(struct executor *x, const struct exec_job *j, const char *host,
		      json_t *insts, uint64_t want, struct topup *t, struct err *e)
{
	size_t n_inst = json_array_size(insts), n_chk = j->cfg->n_acceptance;
	for (uint64_t k = 0; k < want && k < TOPUP_BATCH && n_inst && n_chk; k++, t->next++) {
		json_t *in = json_array_get(insts, t->next % n_inst), *ans = NULL;
		const struct config_check *c = &j->cfg->acceptance[(t->next / n_inst) % n_chk];
		const char *iid = json_string_value(json_object_get(in, "id")) ?: "";
		int r = exec__check(x, j, host, iid, c, &ans, e);
		if (r < 0)
			return r;
		bool ok = json_is_true(json_object_get(ans, "ok"));
		gate_add_latency(&t->gen, json_integer_value(json_object_get(ans, "latency_ms")), !ok);
		if (!ok && !t->first_fail[0])
			snprintf(t->first_fail, sizeof(t->first_fail), "acceptance '%s' on %s: %.180s",
				 c->name, iid,
				 json_string_value(json_object_get(ans, "error")) ?: "failed");
		json_decref(ans);
	}
	return 0;
}

static void traffic_add(struct gate_traffic *a, const struct gate_traffic *b)
{
	a->requests += b->requests;
	a->errors += b->errors;
	for (int i = 0; i < GATE_BUCKETS; i++)
		a->hist[i] += b->hist[i];
}

/* TCP mode: the new release's connections, and those that failed (no connect, or reset by the
 * instance once connected), from the "tcp" counters. */
static void tcp_of(json_t *proxy, const char *release, uint64_t *conns, uint64_t *fails)
{
	json_t *v;
	size_t i;
	*conns = *fails = 0;
	json_array_foreach(json_object_get(proxy, "releases"), i, v)
		if (!strcmp(json_string_value(json_object_get(v, "release")) ?: "", release)) {
			json_t *t = json_object_get(v, "tcp");
			*conns = (uint64_t)json_integer_value(json_object_get(t, "conns"));
			*fails = (uint64_t)json_integer_value(json_object_get(t, "connect_failures")) +
				 (uint64_t)json_integer_value(json_object_get(t, "upstream_resets"));
		}
}

/* The reason of a bake that could not judge: what it saw, what it could not, what to do. */
static void unjudged_why(const struct exec_job *j, const struct gate_traffic *users,
			 const struct topup *t, uint64_t conns, uint64_t fails, int64_t ms,
			 const char *gate_why, char *why, size_t n)
{
	const struct config *cfg = j->cfg;
	uint64_t min = (uint64_t)cfg->rollout.min_requests;
	uint64_t seen = users->requests + t->gen.requests;
	char bake[32];
	int k;
	time_fmt_duration(cfg->rollout.bake_ms, bake, sizeof(bake));
	if (cfg->rollout.bake_ms == 0)
		k = snprintf(why, n, "not judged: rollout.bake is 0, so no bake watched the new release");
	else if (seen >= min)
		k = snprintf(why, n, "not judged: %s", gate_why);
	else if (!cfg->health.http)
		k = snprintf(why, n,
			     "not judged: TCP mode (no health.http): the proxy sees connections, not "
			     "answers; in %.1f s it saw %llu connections to the new release, %llu not "
			     "accepted or reset, and its instances stayed up, but no answer (5xx, "
			     "latency) was judged",
			     (double)ms / 1000.0, (unsigned long long)conns, (unsigned long long)fails);
	else
		k = snprintf(why, n,
			     "not judged: too little traffic: %llu requests reached the new release "
			     "in its %s bake, the gates judge %llu or more",
			     (unsigned long long)users->requests, bake, (unsigned long long)min);
	if (k < 0 || (size_t)k >= n || cfg->rollout.bake_ms == 0 || seen >= min)
		return;
	if (cfg->n_acceptance)
		snprintf(why + k, n - (size_t)k,
			 "; repeating the acceptance checks added %llu answers (%llu failed) within "
			 "%.1f s; send traffic during the bake or lower rollout.gates.min_requests",
			 (unsigned long long)t->gen.requests, (unsigned long long)t->gen.errors,
			 (double)ms / 1000.0);
	else
		snprintf(why + k, n - (size_t)k,
			 "; there are no acceptance checks to repeat: add one for a real endpoint%s",
			 cfg->health.http ? ", or send traffic during the bake" : " and set health.http");
}

int traffic_bake(struct executor *x, const struct exec_job *j, const char *host,
		 struct buf *detail, struct err *e)
{
	const struct config *cfg = j->cfg;
	struct gate_limits lim = { cfg->rollout.max_error_rate, cfg->rollout.max_p99_ms,
				   cfg->rollout.max_p99_ratio, cfg->rollout.min_requests };
	struct gate_traffic snap, base, nt, judged, basej;
	struct topup tu = {0}, tb = {0}; /* the bake's own answers: new release, previous one */
	uint64_t conns0, fails0, conns = 0, fails = 0, min = (uint64_t)cfg->rollout.min_requests;
	json_t *proxy = NULL, *insts0 = NULL, *insts = NULL, *old = NULL;
	char why[1024];
	int r;

	if ((r = proxy_get(x, j, host, &proxy, e)) < 0)
		return r;
	if (r == 0)
		return err_set(e, CAIRN_ECHECK, "no proxy of %s on %s to watch: the switch did not "
			       "happen", j->app, host);
	traffic_of(proxy, j->release, "total", &snap);
	traffic_of(proxy, j->from_release, "window", &base);
	tcp_of(proxy, j->release, &conns0, &fails0);
	json_decref(proxy);
	proxy = NULL;
	if ((r = exec__instances(x, j, host, j->release, false, &insts0, e)) < 0)
		return r;
	int64_t topup_ms = cfg->rollout.bake_ms > TOPUP_MIN_MS ? cfg->rollout.bake_ms : TOPUP_MIN_MS;
	int64_t t0 = time_mono_ns() / 1000000, now = t0;
	for (;;) {
		bool final = now - t0 >= cfg->rollout.bake_ms;
		if (atomic_load(j->abort)) {
			r = err_set(e, ECANCELED, "stopped during the bake on %s", host);
			break;
		}
		if ((r = proxy_get(x, j, host, &proxy, e)) < 0 ||
		    (r = exec__instances(x, j, host, j->release, false, &insts, e)) < 0)
			break;
		traffic_of(proxy, j->release, "total", &nt);
		traffic_sub(&nt, &snap);
		tcp_of(proxy, j->release, &conns, &fails);
		conns = conns > conns0 ? conns - conns0 : 0;
		fails = fails > fails0 ? fails - fails0 : 0;
		json_decref(proxy);
		proxy = NULL;
		judged = nt;
		traffic_add(&judged, &tu.gen);
		basej = base;
		traffic_add(&basej, &tb.gen);
		if (crash_check(insts0, insts, why, sizeof(why))) {
			bake_detail(detail, "fail", why, now - t0, &judged, &basej);
			r = err_set(e, CAIRN_ECHECK, "%s", why);
			break;
		}
		/* TCP mode: a new instance the proxy could not connect to fails like a 5xx */
		if (conns >= min && (double)fails / (double)conns > lim.max_error_rate) {
			snprintf(why, sizeof(why),
				 "connection gate: %llu of %llu connections to the new release failed "
				 "(not accepted, or reset by it; %.1f%%, limit %.1f%%)",
				 (unsigned long long)fails, (unsigned long long)conns,
				 100.0 * (double)fails / (double)conns, lim.max_error_rate * 100);
			bake_detail(detail, "fail", why, now - t0, &judged, &basej);
			r = err_set(e, CAIRN_ECHECK, "%s", why);
			break;
		}
		enum gate_verdict v = gate_judge(&judged, j->from_release[0] ? &basej : NULL, &lim,
						 final, why, sizeof(why));
		if (v == GATE_FAIL) {
			if (tu.first_fail[0] && strlen(why) + 2 < sizeof(why))
				snprintf(why + strlen(why), sizeof(why) - strlen(why), "; %s",
					 tu.first_fail);
			bake_detail(detail, "fail", why, now - t0, &judged, &basej);
			r = err_set(e, CAIRN_ECHECK, "%s", why);
			break;
		}
		/* too few to judge at the end of the bake: repeat the acceptance checks, bounded */
		bool need_new = judged.requests < min;
		bool need_base = !need_new && lim.max_p99_ratio > 0 && j->from_release[0] &&
				 basej.requests < min;
		if (v == GATE_TOO_LITTLE && need_base && !old &&
		    (r = exec__instances(x, j, host, j->from_release, false, &old, e)) < 0)
			break;
		if (v == GATE_TOO_LITTLE && (need_new || json_array_size(old)) &&
		    cfg->rollout.bake_ms > 0 && cfg->n_acceptance &&
		    now - t0 < cfg->rollout.bake_ms + topup_ms) {
			r = need_new ? topup_send(x, j, host, insts, min - judged.requests, &tu, e)
				     : topup_send(x, j, host, old, min - basej.requests, &tb, e);
			if (r < 0)
				break;
			json_decref(insts);
			insts = NULL;
			now = time_mono_ns() / 1000000;
			continue;
		}
		json_decref(insts);
		insts = NULL;
		if (v == GATE_PASS) {
			if (tu.gen.requests && strlen(why) + 2 < sizeof(why))
				snprintf(why + strlen(why), sizeof(why) - strlen(why),
					 " (%llu of them the bake's own repeats of the acceptance checks)",
					 (unsigned long long)tu.gen.requests);
			if (tb.gen.requests && strlen(why) + 2 < sizeof(why))
				snprintf(why + strlen(why), sizeof(why) - strlen(why),
					 "; the previous release's p99 %.1f ms from %llu requests, %llu "
					 "of them the same checks sent to its instances",
					 gate_percentile_ms(basej.hist, 99),
					 (unsigned long long)basej.requests,
					 (unsigned long long)tb.gen.requests);
			if (!cfg->health.http && strlen(why) + 2 < sizeof(why))
				snprintf(why + strlen(why), sizeof(why) - strlen(why),
					 "; TCP mode: users' answers are not seen, only these checks' "
					 "(%llu connections, %llu not accepted or reset)",
					 (unsigned long long)conns, (unsigned long long)fails);
			bake_detail(detail, "pass", why, now - t0, &judged, &basej);
			r = 0;
			break;
		}
		if (v == GATE_TOO_LITTLE) {
			char gate_why[512];
			snprintf(gate_why, sizeof(gate_why), "%s", why);
			unjudged_why(j, &nt, &tu, conns, fails, now - t0, gate_why, why, sizeof(why));
			/* the ratio gate's baseline was short: say whether the bake could add to it */
			size_t at = strlen(why);
			if (judged.requests >= min && cfg->rollout.bake_ms > 0 && !cfg->n_acceptance)
				snprintf(why + at, sizeof(why) - at,
					 " (no acceptance checks to send the previous release)");
			else if (judged.requests >= min && cfg->rollout.bake_ms > 0 &&
				 !json_array_size(old))
				snprintf(why + at, sizeof(why) - at,
					 " (its instances no longer run: the bake could not send it "
					 "the acceptance checks)");
			else if (judged.requests >= min && tb.gen.requests)
				snprintf(why + at, sizeof(why) - at,
					 " (%llu of them the acceptance checks the bake sent its "
					 "instances within %.1f s)",
					 (unsigned long long)tb.gen.requests, (double)(now - t0) / 1000.0);
			bake_detail(detail, "unjudged", why, now - t0, &judged, &basej);
			log_warn("controller", "job %lld, bake on %s: %s", (long long)j->id, host, why);
			/* rollout.bake 0 is a choice, not a bake that failed to judge; a release a
			 * bake judged good before (a rollback, a redeploy) keeps the traffic */
			struct store_release rel;
			struct err e2;
			bool was_good = store_release_get(j->st, j->release, &rel, &e2) == 0 &&
					rel.state == RELEASE_GOOD;
			if (cfg->rollout.unjudged_pass || cfg->rollout.bake_ms == 0 || was_good) {
				r = 0;
			} else {
				r = err_set(e, CAIRN_ECHECK,
					    "%s; rollout.unjudged is fail, so an unjudged release does "
					    "not ship (rollout.unjudged: pass ships it marked unjudged)",
					    why);
			}
			break;
		}
		int64_t left = t0 + cfg->rollout.bake_ms - now;
		nap_ms(left > 0 && left < BAKE_POLL_MS ? left : BAKE_POLL_MS);
		now = time_mono_ns() / 1000000;
	}
	json_decref(proxy);
	json_decref(insts);
	json_decref(insts0);
	json_decref(old);
	return r;
}

void traffic_evidence(struct executor *x, const struct exec_job *j, const char *host, json_t *detail)
{
	json_t *insts = NULL, *v, *logs = json_array();
	size_t i, k;
	struct err e;
	if (exec__instances(x, j, host, j->release, false, &insts, &e) < 0) {
		json_decref(logs);
		return;
	}
	json_array_foreach(insts, i, v)
	{
		char path[256];
		json_t *ans = NULL, *ln, *lines;
		const char *id = json_string_value(json_object_get(v, "id"));
		if (i >= 2 || !id)
			break;
		lines = json_array();
		snprintf(path, sizeof(path), "/v1/apps/%s/instances/%s/logs?tail=%d", j->app, id,
			 EVIDENCE_LINES);
		if (exec__agent_call(x, host, "GET", path, NULL, 5000, &ans, &e) == 0)
			json_array_foreach(json_object_get(ans, "lines"), k, ln)
			{
				const char *s = json_string_value(json_object_get(ln, "line")) ?: "";
				json_array_append_new(lines, json_stringn(s, strnlen(s, EVIDENCE_LINE_MAX)));
			}
		json_decref(ans);
		json_array_append_new(logs, json_pack("{s:s,s:o}", "instance", id, "last_lines", lines));
	}
	json_decref(insts);
	json_object_set_new(detail, "logs", logs);
}
