/* fault config: turns cairn.yml's faults: proxies and toxics into the API requests a Toxiproxy
 * client would send (POST /proxies, POST /proxies/{p}/toxics) and runs them through
 * fault_handle, so a declared proxy behaves exactly like one created over the API. */
#include "proxy/fault-config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Runs one request; a non-2xx answer becomes an error at the entry's position. */
static int request(struct fault *f, const char *path, json_t *body, const struct config *c,
		   int line, int col, const char *what, struct err *e)
{
	struct fault_reply out;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_t *ans;
	const char *msg;
	int r = 0;

	if (!text)
		return err_set(e, ENOMEM, "out of memory");
	fault_handle(f, "POST", path, text, strlen(text), &out);
	free(text);
	if (out.status >= 200 && out.status < 300) {
		buf_done(&out.body);
		return 0;
	}
	ans = json_loads(buf_str(&out.body), JSON_DISABLE_EOF_CHECK, NULL);
	msg = json_string_value(json_object_get(ans, "error"));
	r = err_set_at(e, out.status < 500 ? CAIRN_EINPUT : EADDRNOTAVAIL, c->file, line, col,
		       "%s: %s", what, msg ? msg : buf_str(&out.body));
	json_decref(ans);
	buf_done(&out.body);
	return r;
}

static json_t *toxic_body(const struct config_toxic *t)
{
	json_t *a = json_object(), *o;
	for (size_t k = 0; a && k < t->n_attrs; k++)
		json_object_set_new(a, t->attrs[k].name, json_integer((json_int_t)t->attrs[k].value));
	o = json_pack("{s:s,s:s,s:s,s:f,s:o}", "name", t->name, "type", t->type, "stream",
		      t->upstream ? "upstream" : "downstream", "toxicity", t->toxicity, "attributes",
		      a ? a : json_object());
	return o;
}

int fault_apply_config(struct fault *f, const struct config *c, struct err *e)
{
	char path[PROXY_TOXIC_NAME_MAX + 32], what[PROXY_TOXIC_NAME_MAX * 2 + 64];
	int r = 0;

	for (size_t i = 0; r >= 0 && i < c->faults.n_proxies; i++) {
		const struct config_fault_proxy *fp = &c->faults.proxies[i];
		json_t *b = json_pack("{s:s,s:s,s:s,s:b}", "name", fp->name, "listen", fp->listen,
				      "upstream", fp->upstream, "enabled", fp->enabled);
		snprintf(what, sizeof(what), "faults.proxies[%zu] (%s)", i, fp->name);
		r = request(f, "/proxies", b, c, fp->line, fp->col, what, e);
		json_decref(b);
		snprintf(path, sizeof(path), "/proxies/%s/toxics", fp->name);
		for (size_t j = 0; r >= 0 && j < fp->n_toxics; j++) {
			const struct config_toxic *t = &fp->toxics[j];
			b = toxic_body(t);
			snprintf(what, sizeof(what), "faults.proxies[%zu].toxics[%zu] (%s)", i, j,
				 t->name);
			r = request(f, path, b, c, t->line, t->col, what, e);
			json_decref(b);
		}
	}
	return r < 0 ? r : 0;
}
