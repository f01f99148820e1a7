/* controller/ports: one owner per port on a host. What every app's current release listens on,
 * per host (GET /v1/apps answers it as "ports"; `cairn check` asks for it when a controller
 * answers), and the check every deploy and rollback passes before it is queued: a release whose
 * listen another app on one of its hosts already has is refused, naming that app. The agent
 * refuses the same at the switch (agent/proxy.c), for what races past this check. */
#include "controller/controller-internal.h"

#include "config/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool wildcard(const char *h)
{
	return !h || !*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "[::]") ||
	       !strcmp(h, "*");
}

static bool clash(const char *h1, int p1, const char *h2, int p2)
{
	return p1 == p2 && p1 > 0 && (wildcard(h1) || wildcard(h2) || !strcmp(h1, h2));
}

static int add_app(void *ctx, const struct store_release *r)
{
	struct strv *apps = ctx;
	for (size_t i = 0; i < apps->n; i++)
		if (!strcmp(apps->v[i], r->app))
			return 0;
	if (apps->n >= CTL_PORTS_APPS_MAX)
		return 1;
	strv_push(apps, r->app);
	return 0;
}

json_t *ports_of_apps(struct server *srv, struct store *st, struct err *e)
{
	struct strv apps;
	json_t *out = json_array();
	strv_init(&apps);
	if (store_release_list(st, NULL, add_app, &apps, e) < 0) {
		strv_done(&apps);
		json_decref(out);
		return NULL;
	}
	for (size_t i = 0; i < apps.n; i++) {
		struct store_app a;
		struct config *cfg = NULL;
		struct err pe;
		if (store_jobs(st)->app_get(st, apps.v[i], &a, &pe) < 0 || !a.current[0] ||
		    plan_load(srv->o.state_dir, a.current, &cfg, &pe) < 0)
			continue;
		for (size_t h = 0; h < cfg->n_hosts; h++)
			json_array_append_new(
				out, json_pack("{s:s,s:s,s:s,s:s,s:i}", "app", apps.v[i], "release",
					       a.current, "host", cfg->hosts[h].name, "listen_host",
					       cfg->listen_host ? cfg->listen_host : "127.0.0.1",
					       "listen_port", cfg->listen_port));
		config_free(cfg);
	}
	strv_done(&apps);
	return out;
}

int controller_ports_clash(const struct json_t *ports, const char *app, const struct config *cfg, struct err *e)
{
	size_t i;
	json_t *p;
	const char *lh = cfg->listen_host ? cfg->listen_host : "127.0.0.1";
	json_array_foreach(ports, i, p)
	{
		const char *other = json_string_value(json_object_get(p, "app"));
		const char *host = json_string_value(json_object_get(p, "host"));
		const char *oh = json_string_value(json_object_get(p, "listen_host"));
		int op = (int)json_integer_value(json_object_get(p, "listen_port"));
		if (!other || !host || !strcmp(other, app) || !clash(lh, cfg->listen_port, oh, op))
			continue;
		for (size_t h = 0; h < cfg->n_hosts; h++)
			if (!strcmp(cfg->hosts[h].name, host))
				return err_set(e, EADDRINUSE,
					       "listen %s:%d: address already in use on host %s: app %s "
					       "(release %.19s) listens on %s:%d there; give %s another "
					       "listen in its cairn.yml",
					       lh, cfg->listen_port, host, other,
					       json_string_value(json_object_get(p, "release")), oh, op,
					       app);
	}
	return 0;
}

int ports_check_release(struct server *srv, struct store *st, const char *app,
			const char *release, struct err *e)
{
	struct config *cfg = NULL;
	int r;
	if (plan_load(srv->o.state_dir, release, &cfg, e) < 0)
		return 0; /* the job itself reports a release it cannot plan */
	json_t *ports = ports_of_apps(srv, st, e);
	r = ports ? controller_ports_clash(ports, app, cfg, e) : 0;
	json_decref(ports);
	config_free(cfg);
	return r;
}
