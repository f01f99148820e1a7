/* fuzz toxiproxy api: arbitrary bytes as the JSON bodies of the Toxiproxy-compatible API — the
 * proxy, populate and toxic decoders directly, and the toxic create/update routes through
 * fault_handle on a disabled proxy (nothing binds) — and as an --allow-listen entry. Every reply
 * must be a known status with a body that is valid JSON (error bodies included: clients decode
 * them). */
#include "proxy/proxy.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct proxy_engine *eng;
static struct fault *f;

static void check_json(const struct fault_reply *r)
{
	json_error_t je;
	if (r->status == 204 || r->status == 405 ||
	    (r->status == 404 && !strcmp(buf_str(&r->body), "404 page not found\n")))
		return; /* Go's plain-text answers for routes that do not exist */
	/* integers past int64 (a float32 toxicity printed as Go does, 2e20 → "200000000000000000000")
	 * are valid JSON that jansson only reads as reals */
	json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len,
			       JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
	if (!j)
		__builtin_trap();
	json_decref(j);
}

static void call(const char *m, const char *path, const char *body, size_t n, int *out_status)
{
	struct fault_reply r;
	fault_handle(f, m, path, body, n, &r);
	if (r.status != 200 && r.status != 201 && r.status != 204 && r.status != 400 &&
	    r.status != 404 && r.status != 405 && r.status != 409)
		__builtin_trap();
	check_json(&r);
	if (out_status)
		*out_status = r.status;
	buf_done(&r.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err e;
	if (!f) {
		struct proxy_engine_opts o = { .threads = 1, .seed = 1 };
		if (proxy_engine_new(&o, &eng, &e) < 0)
			__builtin_trap();
		f = fault_new(eng);
		const char *mk = "{\"name\":\"p\",\"listen\":\"127.0.0.1:0\",\"upstream\":\"127.0.0.1:1\","
				 "\"enabled\":false}";
		call("POST", "/proxies", mk, strlen(mk), NULL);
		const char *t = "{\"type\":\"latency\",\"name\":\"t\"}";
		call("POST", "/proxies/p/toxics", t, strlen(t), NULL);
	}
	if (size == 0)
		return 0;
	const char *body = (const char *)data + 1;
	size_t n = size - 1;
	int st = 0;

	fault__parse_any(body, n, &e);
	{ /* the body as an --allow-listen entry: parsed or refused, never more */
		char spec[128];
		size_t k = n < sizeof spec - 1 ? n : sizeof spec - 1;
		memcpy(spec, body, k);
		spec[k] = 0;
		struct fault *g = fault_new(eng);
		int ra = fault_allow_listen(g, spec, &e);
		if (ra != 0 && ra != -CAIRN_EINPUT)
			__builtin_trap();
		fault_free(g);
	}
	switch (data[0] % 3) {
	case 0: /* create a toxic, then read it back and remove it */
		call("POST", "/proxies/p/toxics", body, n, &st);
		if (st == 200) {
			call("GET", "/proxies/p/toxics", NULL, 0, NULL);
			call("GET", "/proxies/p", NULL, 0, NULL);
			/* whatever its name, the newest toxic is removed by listing and deleting */
			struct fault_reply r;
			fault_handle(f, "GET", "/proxies/p/toxics", NULL, 0, &r);
			json_t *arr = json_loadb(r.body.data, r.body.len, 0, NULL);
			size_t i;
			json_t *v;
			json_array_foreach(arr, i, v) {
				const char *name = json_string_value(json_object_get(v, "name"));
				if (name && strcmp(name, "t") && !strchr(name, '/') && name[0]) {
					char *path = malloc(strlen(name) + 32);
					sprintf(path, "/proxies/p/toxics/%s", name);
					call("DELETE", path, NULL, 0, NULL);
					free(path);
				}
			}
			json_decref(arr);
			buf_done(&r.body);
		}
		break;
	case 1:
		call("PATCH", "/proxies/p/toxics/t", body, n, NULL);
		break;
	default: {
		/* the body as a path: routing of arbitrary segments (proxy bodies go through the
		 * decoders only: a fuzzer must not bind arbitrary ports) */
		char path[256];
		size_t k = n < sizeof path - 1 ? n : sizeof path - 1;
		memcpy(path, body, k);
		path[k] = 0;
		call("GET", path[0] == '/' ? path : "/proxies/p", NULL, 0, NULL);
		break;
	}
	}
	return 0;
}
