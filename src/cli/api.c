/* cli api: the CLI's client of the controller API — libcurl over the unix socket in the state
 * directory, or TCP (--addr / CAIRN_ADDR) with a bearer token (--token-file). Commands that
 * touch deploy state go through here and nowhere else. */
#include "cli/cli.h"

#include "config/config.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int cli_api_open(const struct cli_ctx *ctx, const struct cli_api_opts *o, struct cli_api *out,
		 struct err *e)
{
	const char *addr = o->addr ? o->addr : getenv("CAIRN_ADDR");
	memset(out, 0, sizeof(*out));
	out->c.timeout_ms = CLI_API_TIMEOUT_MS;
	if (addr && *addr) {
		out->url = str_starts(addr, "http://") ? xstrdup(addr) : xasprintf("http://%s", addr);
		out->c.base_url = out->url;
		const char *tf = o->token_file ? o->token_file : getenv("CAIRN_TOKEN_FILE");
		if (tf) {
			struct buf b;
			buf_init(&b, 4096);
			if (fs_read_file(tf, &b, e) < 0) {
				buf_done(&b);
				free(out->url);
				return -e->code;
			}
			struct slice t = slice_trim((struct slice){ buf_str(&b), b.len });
			out->token = xstrndup(t.p, t.n);
			buf_done(&b);
			out->c.token = out->token;
		}
	} else {
		char *dir = store_state_dir(ctx->state_flag);
		out->sock = fs_join(dir, "cairn.sock");
		free(dir);
		out->c.unix_path = out->sock;
		out->c.base_url = "http://localhost";
	}
	return 0;
}

void cli_api_done(struct cli_api *a)
{
	free(a->sock);
	free(a->url);
	free(a->token);
}

const char *cli_api_where(const struct cli_api *a)
{
	return a->sock ? a->sock : a->url;
}

int cli_api_call(struct cli_api *a, const char *method, const char *path, json_t *body,
		 const char *idem_key, long *out_status, json_t **out, struct err *e)
{
	return cli_api_call_code(a, method, path, body, idem_key, out_status, out, NULL, e);
}

int cli_api_call_code(struct cli_api *a, const char *method, const char *path, json_t *body,
		      const char *idem_key, long *out_status, json_t **out,
		      char out_code[CLI_API_CODE_MAX], struct err *e)
{
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	char *hk = idem_key ? xasprintf("Idempotency-Key: %s", idem_key) : NULL;
	const char *hdrs[] = { hk, NULL };
	struct httpc_req rq = { .method = method, .path = path, .headers = hk ? hdrs : NULL,
				.body = txt, .body_n = txt ? strlen(txt) : 0 };
	struct httpc_resp resp;
	json_error_t je;
	int r;

	json_decref(body);
	buf_init(&resp.body, 64 * 1024 * 1024);
	r = httpc_do(&a->c, &rq, &resp, e);
	free(txt);
	free(hk);
	if (r < 0) {
		char *dir = a->sock ? xstrndup(a->sock, strlen(a->sock) - strlen("/cairn.sock"))
				    : NULL;
		if (dir && (r == -ECONNREFUSED || r == -ENOENT || e->code == ECONNREFUSED ||
			    e->code == ENOENT) && !fs_is_dir(dir))
			r = err_set(e, CAIRN_ENOTFOUND,
				    "nothing is there: no state directory %s, so no controller; check "
				    "--state / CAIRN_STATE (or pass --addr / CAIRN_ADDR)",
				    dir);
		else if (r == -ECONNREFUSED || r == -ENOENT || e->code == ECONNREFUSED)
			err_set(e, ECONNREFUSED,
				"no controller answers at %s; start one with 'cairn serve' (or pass "
				"--addr / CAIRN_ADDR)",
				cli_api_where(a));
		free(dir);
		buf_done(&resp.body);
		return r;
	}
	json_t *j = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
	buf_done(&resp.body);
	*out_status = resp.status;
	if (resp.status >= 400) {
		json_t *err = json_object_get(j, "error");
		const char *code = json_string_value(json_object_get(err, "code"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		int c = resp.status == 404 ? CAIRN_ENOTFOUND
			: (resp.status == 400 || resp.status == 422 || resp.status == 413) ? CAIRN_EINPUT
											    : CAIRN_ECHECK;
		r = err_set(e, c, "%s (%ld %s)", msg ? msg : "the controller refused the request",
			    resp.status, code ? code : "error");
		if (out_code)
			snprintf(out_code, CLI_API_CODE_MAX, "%s", code ? code : "");
		json_decref(j);
		return r;
	}
	if (!j)
		return err_set(e, EIO, "the controller's answer is not JSON: %s", je.text);
	*out = j;
	return 0;
}

int cli_app_name(const struct cli_ctx *ctx, const char *flag, char **out, struct err *e)
{
	struct config *cfg = NULL;
	int r;
	if (flag) {
		*out = xstrdup(flag);
		return 0;
	}
	if ((r = cli_load_config(ctx, &cfg, e)) < 0) {
		err_prefix(e, "which app? pass --app APP or run where cairn.yml is");
		return r;
	}
	*out = xstrdup(cfg->app);
	config_free(cfg);
	return 0;
}

int cli_api_opt(struct cli_api_opts *o, const char **app, int c, const char *arg)
{
	switch (c) {
	case 'a':
		*app = arg;
		return 1;
	case 'A':
		o->addr = arg;
		return 1;
	case 'T':
		o->token_file = arg;
		return 1;
	default:
		return 0;
	}
}

bool cli_api_is_remote(const struct cli_api_opts *o)
{
	const char *addr = o->addr ? o->addr : getenv("CAIRN_ADDR");
	return addr && *addr;
}
