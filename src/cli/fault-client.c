/* cli fault client: the `cairn fault` verbs that talk to a running fault API over HTTP
 * (libcurl), mirroring toxiproxy-cli's verbs, flags and messages. Prints text or the API's
 * JSON (--json); HTTP 4xx exits 2, unreachable or 5xx exits 1. */
#include "cli/cli-fault.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define RESP_MAX (16u << 20)

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	return buf_add(b, p, size * n) < 0 ? 0 : size * n;
}

/* One API call. Returns the HTTP status, or -1 with e set when the server was not reached. */
static long call(const char *addr, const char *method, const char *path, const char *body,
		 struct buf *resp, struct err *e)
{
	CURL *c = curl_easy_init();
	char url[1024], cerr[CURL_ERROR_SIZE] = "";
	long status = -1;
	struct curl_slist *h = NULL;

	if (!c) {
		err_set(e, ENOMEM, "out of memory");
		return -1;
	}
	snprintf(url, sizeof url, "%s%s%s", str_starts(addr, "http://") ? "" : "http://", addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "cairn-fault/" CAIRN_VERSION);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	CURLcode r = curl_easy_perform(c);
	if (r != CURLE_OK)
		err_set(e, CAIRN_ECHECK,
			"cannot reach the fault API at %s: %s (is 'cairn fault serve' running? pass --addr)",
			addr, cerr[0] ? cerr : curl_easy_strerror(r));
	else
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return status;
}

/* An error reply → message and exit code (4xx: 2, else 1). */
static int api_fail(const struct cli_ctx *ctx, long status, const struct buf *resp)
{
	struct err e;
	json_t *j = json_loads(buf_str(resp), JSON_DECODE_ANY, NULL);
	const char *msg = json_is_object(j) ? json_string_value(json_object_get(j, "error")) : NULL;
	err_set(&e, status >= 400 && status < 500 ? CAIRN_EINPUT : CAIRN_ECHECK, "HTTP %ld: %s",
		status, msg ? msg : buf_str(resp));
	json_decref(j);
	return cli_fail(ctx, &e);
}

/* Calls and, on success, hands back the parsed JSON (NULL for 204). Returns -1 on success,
 * else the exit code. */
static int do_call(const struct cli_ctx *ctx, const char *addr, const char *method,
		   const char *path, const char *body, json_t **out)
{
	struct buf resp;
	struct err e;
	buf_init(&resp, RESP_MAX);
	long st = call(addr, method, path, body, &resp, &e);
	int rc = -1;
	if (st < 0)
		rc = cli_fail(ctx, &e);
	else if (st < 200 || st > 299)
		rc = api_fail(ctx, st, &resp);
	else if (out)
		*out = resp.len ? json_loads(buf_str(&resp), JSON_DECODE_ANY, NULL) : NULL;
	buf_done(&resp);
	return rc;
}

static char *esc(const char *name)
{
	char *u = curl_easy_escape(NULL, name, 0);
	char *r = xstrdup(u ? u : name);
	curl_free(u);
	return r;
}

static void print_json(json_t *j)
{
	if (j)
		json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
	else
		fputs("{}", stdout);
	fputc('\n', stdout);
}

static void print_toxic(json_t *t)
{
	const char *k;
	json_t *v;
	printf("  %s\t%s\t%s\ttoxicity=%g\t", json_string_value(json_object_get(t, "name")),
	       json_string_value(json_object_get(t, "type")),
	       json_string_value(json_object_get(t, "stream")),
	       json_number_value(json_object_get(t, "toxicity")));
	json_object_foreach(json_object_get(t, "attributes"), k, v)
		printf(" %s=%" JSON_INTEGER_FORMAT, k, json_integer_value(v));
	fputc('\n', stdout);
}

static int verb_list(const struct cli_ctx *ctx, const char *addr)
{
	json_t *j = NULL, *p;
	const char *name;
	int rc = do_call(ctx, addr, "GET", "/proxies", NULL, &j);
	if (rc >= 0)
		return rc;
	if (ctx->json) {
		print_json(j);
	} else {
		printf("%-20s %-24s %-24s %-8s %s\n", "Name", "Listen", "Upstream", "Enabled", "Toxics");
		json_object_foreach(j, name, p)
			printf("%-20s %-24s %-24s %-8s %zu\n", name,
			       json_string_value(json_object_get(p, "listen")),
			       json_string_value(json_object_get(p, "upstream")),
			       json_is_true(json_object_get(p, "enabled")) ? "enabled" : "disabled",
			       json_array_size(json_object_get(p, "toxics")));
		if (json_object_size(j) == 0)
			printf("no proxies\n");
	}
	json_decref(j);
	return 0;
}

static int verb_inspect(const struct cli_ctx *ctx, const char *addr, const char *name)
{
	json_t *j = NULL, *t;
	char *e = esc(name), *path = xasprintf("/proxies/%s", e);
	size_t i;
	int rc = do_call(ctx, addr, "GET", path, NULL, &j);
	free(e);
	free(path);
	if (rc >= 0)
		return rc;
	if (ctx->json) {
		print_json(j);
	} else {
		printf("%s\tlisten %s\tupstream %s\t%s\n", name,
		       json_string_value(json_object_get(j, "listen")),
		       json_string_value(json_object_get(j, "upstream")),
		       json_is_true(json_object_get(j, "enabled")) ? "enabled" : "disabled");
		json_array_foreach(json_object_get(j, "toxics"), i, t)
			print_toxic(t);
	}
	json_decref(j);
	return 0;
}

/* The rest of the verbs take options; they share one parser. */
struct opts {
	const char *listen, *upstream_addr, *type, *name;
	bool up, down, disabled, has_tox;
	double tox;
	json_t *attrs; /* owned */
};

static int parse_attr(json_t *attrs, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv)
		return -1;
	char *key = xstrndup(kv, (size_t)(eq - kv)), *end;
	const char *val = eq + 1;
	double d = strtod(val, &end);
	json_t *v;
	/* toxiproxy-cli: values that parse as floats are numbers, anything else strings */
	if (*val && !*end)
		v = d == (double)(json_int_t)d ? json_integer((json_int_t)d) : json_real(d);
	else
		v = json_string(val);
	json_object_set_new(attrs, key, v);
	free(key);
	return 0;
}

static int parse_opts(int argc, char **argv, bool create, struct opts *o, int *out_optind)
{
	static const struct option lo[] = {
		{ "listen", required_argument, NULL, 'l' },   { "upstream", optional_argument, NULL, 'u' },
		{ "downstream", no_argument, NULL, 'd' },     { "type", required_argument, NULL, 't' },
		{ "toxicName", required_argument, NULL, 'n' }, { "tox", required_argument, NULL, 'x' },
		{ "toxicity", required_argument, NULL, 'x' }, { "attribute", required_argument, NULL, 'a' },
		{ "disabled", no_argument, NULL, 'D' },       { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	char *end;
	int c;
	o->attrs = json_object();
	optind = 1;
	while ((c = getopt_long(argc, argv, create ? "l:u:hn:t:a:" : "udt:n:a:h", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 'u':
			if (create)
				o->upstream_addr = optarg;
			else
				o->up = true;
			if (!create && optarg)
				return cli_usage(&cli_cmd_fault, "-u/--upstream takes no value for toxics");
			break;
		case 'd':
			o->down = true;
			break;
		case 't':
			o->type = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'D':
			o->disabled = true;
			break;
		case 'x':
			o->tox = strtod(optarg, &end);
			if (*end || o->tox < 0 || o->tox > 1)
				return cli_usage(&cli_cmd_fault, "--tox wants a probability 0..1, not '%s'",
						 optarg);
			o->has_tox = true;
			break;
		case 'a':
			if (parse_attr(o->attrs, optarg) < 0)
				return cli_usage(&cli_cmd_fault, "-a wants KEY=VALUE, not '%s'", optarg);
			break;
		case 'h':
			cli_print_help(&cli_cmd_fault, stdout);
			return 0;
		default:
			return cli_usage(&cli_cmd_fault, "unknown option");
		}
	}
	*out_optind = optind;
	return -1;
}

static int say(const struct cli_ctx *ctx, json_t *j, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int say(const struct cli_ctx *ctx, json_t *j, const char *fmt, ...)
{
	va_list ap;
	if (ctx->json) {
		print_json(j);
	} else {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		fputc('\n', stdout);
	}
	json_decref(j);
	return 0;
}

static int verb_toxic(const struct cli_ctx *ctx, const char *addr, int argc, char **argv)
{
	struct opts o = { 0 };
	int rc, oi = 0;
	json_t *j = NULL;
	if (argc < 2)
		return cli_usage(&cli_cmd_fault, "toxic wants add, update or remove");
	const char *sub = argv[1];
	bool add = !strcmp(sub, "add") || !strcmp(sub, "a");
	bool upd = !strcmp(sub, "update") || !strcmp(sub, "u");
	bool rem = !strcmp(sub, "remove") || !strcmp(sub, "r") || !strcmp(sub, "delete") ||
		   !strcmp(sub, "d");
	if (!add && !upd && !rem)
		return cli_usage(&cli_cmd_fault, "unknown toxic verb '%s' (add, update, remove)", sub);
	rc = parse_opts(argc - 1, argv + 1, false, &o, &oi);
	if (rc >= 0)
		goto out;
	if (oi + 1 != argc - 1) {
		rc = cli_usage(&cli_cmd_fault, "toxic %s wants one proxy name", sub);
		goto out;
	}
	const char *proxy = argv[1 + oi];
	char *ep = esc(proxy);
	if (add) {
		if (!o.type) {
			rc = cli_usage(&cli_cmd_fault, "toxic add wants -t TYPE");
			free(ep);
			goto out;
		}
		const char *stream = o.up ? "upstream" : "downstream";
		json_t *b = json_pack("{s:s,s:s,s:f,s:O}", "type", o.type, "stream", stream, "toxicity",
				      o.has_tox ? o.tox : 1.0, "attributes", o.attrs);
		if (o.name)
			json_object_set_new(b, "name", json_string(o.name));
		char *body = json_dumps(b, JSON_COMPACT), *path = xasprintf("/proxies/%s/toxics", ep);
		rc = do_call(ctx, addr, "POST", path, body, &j);
		json_decref(b);
		free(body);
		free(path);
		if (rc < 0)
			rc = say(ctx, j, "Added %s %s toxic '%s' on proxy '%s'", stream, o.type,
				 json_string_value(json_object_get(j, "name")), proxy);
	} else if (!o.name) {
		rc = cli_usage(&cli_cmd_fault, "toxic %s wants -n NAME", sub);
	} else {
		char *en = esc(o.name), *path = xasprintf("/proxies/%s/toxics/%s", ep, en);
		if (upd) {
			json_t *b = json_pack("{s:O}", "attributes", o.attrs);
			if (o.has_tox)
				json_object_set_new(b, "toxicity", json_real(o.tox));
			char *body = json_dumps(b, JSON_COMPACT);
			rc = do_call(ctx, addr, "PATCH", path, body, &j);
			json_decref(b);
			free(body);
			if (rc < 0)
				rc = say(ctx, j, "Updated toxic '%s' on proxy '%s'", o.name, proxy);
		} else {
			rc = do_call(ctx, addr, "DELETE", path, NULL, NULL);
			if (rc < 0)
				rc = say(ctx, json_pack("{s:s,s:s}", "removed", o.name, "proxy", proxy),
					 "Removed toxic '%s' on proxy '%s'", o.name, proxy);
		}
		free(en);
		free(path);
	}
	free(ep);
out:
	json_decref(o.attrs);
	return rc;
}

int cli__fault_client(const struct cli_ctx *ctx, const char *addr, int argc, char **argv)
{
	const char *v = argv[0];
	json_t *j = NULL;
	int rc;

	if (!strcmp(v, "list") || !strcmp(v, "ls") || !strcmp(v, "l") || !strcmp(v, "li"))
		return argc == 1 ? verb_list(ctx, addr)
				 : cli_usage(&cli_cmd_fault, "list takes no argument");
	if (!strcmp(v, "reset")) {
		if (argc != 1)
			return cli_usage(&cli_cmd_fault, "reset takes no argument");
		rc = do_call(ctx, addr, "POST", "/reset", "", NULL);
		return rc >= 0 ? rc : say(ctx, json_pack("{s:b}", "reset", 1),
					  "Every proxy enabled, every toxic removed");
	}
	if (!strcmp(v, "toxic") || !strcmp(v, "t"))
		return verb_toxic(ctx, addr, argc, argv);
	bool create = !strcmp(v, "create") || !strcmp(v, "c") || !strcmp(v, "new");
	bool inspect = !strcmp(v, "inspect") || !strcmp(v, "i") || !strcmp(v, "ins");
	bool del = !strcmp(v, "delete") || !strcmp(v, "d");
	bool toggle = !strcmp(v, "toggle") || !strcmp(v, "tog");
	if (!create && !inspect && !del && !toggle)
		return cli_usage(&cli_cmd_fault, "unknown verb '%s' (serve, list, inspect, create,"
						 " delete, toggle, toxic, reset)", v);
	struct opts o = { 0 };
	int oi = 0;
	rc = parse_opts(argc, argv, create, &o, &oi);
	json_decref(o.attrs);
	if (rc >= 0)
		return rc;
	if (oi + 1 != argc)
		return cli_usage(&cli_cmd_fault, "%s wants one proxy name", v);
	const char *name = argv[oi];
	if (inspect)
		return verb_inspect(ctx, addr, name);
	char *ep = esc(name), *path = xasprintf("/proxies/%s", ep);
	if (create) {
		if (!o.upstream_addr || !o.listen) {
			free(ep);
			free(path);
			return cli_usage(&cli_cmd_fault, "create wants -l LISTEN and -u UPSTREAM");
		}
		json_t *b = json_pack("{s:s,s:s,s:s,s:b}", "name", name, "listen", o.listen, "upstream",
				      o.upstream_addr, "enabled", !o.disabled);
		char *body = json_dumps(b, JSON_COMPACT);
		rc = do_call(ctx, addr, "POST", "/proxies", body, &j);
		json_decref(b);
		free(body);
		if (rc < 0)
			rc = say(ctx, j, "Created new proxy %s", name);
	} else if (del) {
		rc = do_call(ctx, addr, "DELETE", path, NULL, NULL);
		if (rc < 0)
			rc = say(ctx, json_pack("{s:s}", "deleted", name), "Deleted proxy %s", name);
	} else {
		rc = do_call(ctx, addr, "GET", path, NULL, &j);
		if (rc < 0) {
			bool en = !json_is_true(json_object_get(j, "enabled"));
			json_decref(j);
			j = NULL;
			rc = do_call(ctx, addr, "PATCH", path, en ? "{\"enabled\":true}" : "{\"enabled\":false}",
				     &j);
			if (rc < 0)
				rc = say(ctx, j, "Proxy %s is now %s", name, en ? "enabled" : "disabled");
		}
	}
	free(ep);
	free(path);
	return rc;
}
