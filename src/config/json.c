/* config json: the resolved struct config as a JSON object (defaults filled in, durations in
 * milliseconds with an _ms suffix, signals by name). Read-only over the struct; no I/O. */
#include "config/config.h"

#include <jansson.h>

static json_t *strv_json(const struct strv *v)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return a;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *check_json(const struct config_check *k)
{
	json_t *h = json_object();
	for (size_t i = 0; h && i < k->n_headers; i++)
		json_object_set_new(h, k->headers[i].name, json_string(k->headers[i].value));
	return json_pack("{s:s,s:{s:s,s:s,s:o,s:o},s:{s:i,s:o,s:I}}", "name", k->name, "request",
			 "method", k->method, "path", k->path, "body", str_or_null(k->body),
			 "headers", h ? h : json_object(), "expect", "status", k->expect_status,
			 "body_contains", str_or_null(k->expect_body_contains), "max_latency_ms",
			 (json_int_t)k->expect_max_latency_ms);
}

static json_t *faults_json(const struct config *c)
{
	json_t *ps = json_array();
	for (size_t i = 0; ps && i < c->faults.n_proxies; i++) {
		const struct config_fault_proxy *fp = &c->faults.proxies[i];
		json_t *tx = json_array();
		for (size_t j = 0; tx && j < fp->n_toxics; j++) {
			const struct config_toxic *t = &fp->toxics[j];
			json_t *a = json_object();
			for (size_t k = 0; a && k < t->n_attrs; k++)
				json_object_set_new(a, t->attrs[k].name,
						    json_integer((json_int_t)t->attrs[k].value));
			json_array_append_new(tx, json_pack("{s:s,s:s,s:s,s:f,s:o}", "name", t->name,
							    "type", t->type, "stream",
							    t->upstream ? "upstream" : "downstream",
							    "toxicity", t->toxicity, "attributes",
							    a ? a : json_object()));
		}
		json_array_append_new(ps, json_pack("{s:s,s:s,s:s,s:b,s:o}", "name", fp->name,
						    "listen", fp->listen, "upstream", fp->upstream,
						    "enabled", fp->enabled, "toxics",
						    tx ? tx : json_array()));
	}
	return json_pack("{s:o,s:o}", "listen", str_or_null(c->faults.listen), "proxies",
			 ps ? ps : json_array());
}

struct json_t *config_to_json(const struct config *c)
{
	json_t *env = json_object(), *hosts = json_array(), *checks = json_array(), *o;
	const char *sig = config_signal_name(c->run.stop_signal);

	if (!env || !hosts || !checks)
		goto fail;
	for (size_t i = 0; i < c->run.n_env; i++)
		json_object_set_new(env, c->run.env[i].key, json_string(c->run.env[i].value));
	for (size_t i = 0; i < c->n_hosts; i++)
		json_array_append_new(
		    hosts, c->hosts[i].ssh
				? json_pack("{s:s,s:s,s:s,s:s}", "name", c->hosts[i].name, "ssh",
					    c->hosts[i].ssh, "state", c->hosts[i].state, "cairn",
					    c->hosts[i].cairn)
				: json_pack("{s:s,s:n}", "name", c->hosts[i].name, "ssh"));
	for (size_t i = 0; i < c->n_acceptance; i++)
		json_array_append_new(checks, check_json(&c->acceptance[i]));
	o = json_pack("{s:s,s:s,s:s}", "file", c->file, "dir", c->dir, "app", c->app);
	if (!o)
		goto fail;
	json_object_set_new(o, "build",
			    json_pack("{s:o,s:o,s:s}", "command", strv_json(&c->build.command),
				      "exclude", strv_json(&c->build.exclude), "pins",
				      c->build.pins == CONFIG_PINS_WARN ? "warn" : "require"));
	json_object_set_new(o, "run",
			    json_pack("{s:o,s:o,s:I,s:s}", "command", strv_json(&c->run.command),
				      "env", env, "stop_timeout_ms",
				      (json_int_t)c->run.stop_timeout_ms, "stop_signal",
				      sig ? sig : "SIGTERM"));
	json_object_set_new(o, "listen",
			    json_pack("{s:s,s:i}", "host", c->listen_host, "port", c->listen_port));
	json_object_set_new(o, "hosts", hosts);
	json_object_set_new(o, "instances", json_integer(c->instances));
	json_object_set_new(o, "health",
			    json_pack("{s:o,s:I,s:I,s:i,s:I}", "http", str_or_null(c->health.http),
				      "interval_ms", (json_int_t)c->health.interval_ms,
				      "timeout_ms", (json_int_t)c->health.timeout_ms,
				      "healthy_after", c->health.healthy_after, "start_deadline_ms",
				      (json_int_t)c->health.start_deadline_ms));
	json_object_set_new(o, "acceptance", checks);
	json_object_set_new(
	    o, "rollout",
	    json_pack("{s:i,s:I,s:{s:f,s:I,s:f,s:i},s:b,s:s}", "parallel", c->rollout.parallel,
		      "bake_ms", (json_int_t)c->rollout.bake_ms, "gates", "max_error_rate",
		      c->rollout.max_error_rate, "max_p99_ms", (json_int_t)c->rollout.max_p99_ms,
		      "max_p99_ratio", c->rollout.max_p99_ratio, "min_requests",
		      c->rollout.min_requests, "auto_rollback",
		      c->rollout.auto_rollback, "unjudged",
		      c->rollout.unjudged_pass ? "pass" : "fail"));
	json_object_set_new(o, "faults", faults_json(c));
	return o;
fail:
	json_decref(env);
	json_decref(hosts);
	json_decref(checks);
	return NULL;
}
