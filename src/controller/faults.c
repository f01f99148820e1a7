/* controller faults: starts the faults: section of cairn.yml inside `cairn serve` — a proxy
 * engine with the declared proxies and toxics, and the Toxiproxy-compatible API on
 * faults.listen — and stops them at shutdown. */
#include "controller/faults.h"

#include "config/config.h"
#include "proxy/fault-config.h"
#include "proxy/proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct ctl_faults {
	struct proxy_engine *eng;
	struct fault *f;
	struct fault_api *api;
};

void ctl_faults_stop(struct ctl_faults *cf)
{
	if (!cf)
		return;
	if (cf->api)
		fault_api_stop(cf->api);
	fault_free(cf->f);
	proxy_engine_free(cf->eng);
	free(cf);
}

int ctl_faults_start(const char *config_path, struct ctl_faults **out, struct err *e)
{
	struct proxy_engine_opts o = { .threads = 1 };
	struct config *c = NULL;
	struct ctl_faults *cf = NULL;
	char addr[NET_ADDR_STRLEN];
	int r;

	*out = NULL;
	if (!config_path)
		return 0;
	if ((r = config_load_faults(config_path, &c, e)) < 0)
		return r;
	if (!c->faults.listen && c->faults.n_proxies == 0) {
		config_free(c);
		return 0;
	}
	cf = calloc(1, sizeof(*cf));
	if (!cf) {
		r = err_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = proxy_engine_new(&o, &cf->eng, e)) < 0)
		goto fail;
	if (!(cf->f = fault_new(cf->eng))) {
		r = err_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = fault_apply_config(cf->f, c, e)) < 0)
		goto fail;
	if (c->faults.listen) {
		r = fault_api_start(cf->f, c->faults.listen, &cf->api, addr, e);
		if (r < 0) {
			err_prefix(e, "%s: faults.listen: cannot serve the fault API on %s",
				   config_path, c->faults.listen);
			goto fail;
		}
		log_info("controller", "fault API on %s", addr);
		fprintf(stderr, "cairn serve: fault API on %s\n", addr);
	}
	config_free(c);
	*out = cf;
	return 0;
fail:
	config_free(c);
	ctl_faults_stop(cf);
	return r;
}
