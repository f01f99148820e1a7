/* cli upload: moves a release stored on this machine (the build cache) to a remote controller
 * through its API — which objects it lacks (POST /v1/objects/missing), those objects only
 * (PUT /v1/objects/{hex}, a few at once), then POST /v1/releases. It never writes the
 * controller's state any other way and reads the local objects only. */
#include "cli/cli.h"

#include "release/release.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *cli_cache_dir(const struct cli_ctx *ctx)
{
	const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	if (ctx->state_flag)
		return xstrdup(ctx->state_flag);
	if (x && *x == '/')
		return fs_join(x, "cairn");
	return xasprintf("%s/.cache/cairn", home && *home ? home : ".");
}

struct obj {
	char hex[HASH_HEX_LEN + 1];
	const char *path; /* borrowed from the manifest: a file that holds it ("" the manifest) */
	int64_t size;
	bool missing;
};

static int cmp_obj(const void *a, const void *b)
{
	return strcmp(((const struct obj *)a)->hex, ((const struct obj *)b)->hex);
}

/* The release's distinct objects, sorted by digest: its manifest and every file's content. */
static struct obj *collect(const struct objstore *os, const char *hex, const struct manifest *m,
			   size_t *out_n)
{
	struct obj *v = xcalloc(m->n_entries + 1, sizeof(*v));
	size_t n = 0;
	struct stat sb;
	char *mp = objstore_path(os, hex);

	memcpy(v[n].hex, hex, HASH_HEX_LEN + 1);
	v[n].path = "";
	v[n++].size = stat(mp, &sb) == 0 ? (int64_t)sb.st_size : 0;
	free(mp);
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].type == MANIFEST_FILE) {
			memcpy(v[n].hex, m->entries[i].digest, HASH_HEX_LEN + 1);
			v[n].path = m->entries[i].path;
			v[n++].size = m->entries[i].size;
		}
	qsort(v, n, sizeof(*v), cmp_obj);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(v[k - 1].hex, v[i].hex))
			v[k++] = v[i];
	*out_n = k;
	return v;
}

/* Marks the objects the controller says it lacks, CLI_UPLOAD_BATCH digests per request. */
static int ask_missing(struct cli_api *a, struct obj *v, size_t n, struct err *e)
{
	for (size_t at = 0; at < n; at += CLI_UPLOAD_BATCH) {
		size_t end = n - at > CLI_UPLOAD_BATCH ? at + CLI_UPLOAD_BATCH : n;
		json_t *arr = json_array(), *ans = NULL, *x;
		long status = 0;
		size_t i;
		for (i = at; i < end; i++)
			json_array_append_new(arr, json_string(v[i].hex));
		int r = cli_api_call(a, "POST", "/v1/objects/missing",
				     json_pack("{s:o}", "digests", arr), NULL, &status, &ans, e);
		if (r < 0)
			return r;
		json_array_foreach(json_object_get(ans, "missing"), i, x)
		{
			struct obj key, *o;
			const char *s = json_string_value(x);
			if (!s || strlen(s) != HASH_HEX_LEN)
				continue;
			memcpy(key.hex, s, HASH_HEX_LEN + 1);
			if ((o = bsearch(&key, v + at, end - at, sizeof(*v), cmp_obj)))
				o->missing = true;
		}
		json_decref(ans);
	}
	return 0;
}

/* ---- parallel PUTs ------------------------------------------------------------------------- */

struct pool {
	struct cli_api *a;
	const struct objstore *os;
	struct obj *v;
	size_t n, next; /* next object to look at */
	size_t done, total;
	int64_t done_bytes, total_bytes;
	bool tty;
	pthread_mutex_t mu;
	int r; /* first failure */
	struct err err;
};

/* One PUT of an object (body_file) or of a part of one (body, with ?offset=&size=). */
static int put_req(struct pool *p, struct httpc_session *hs, const struct obj *o,
		   struct httpc_req *rq, size_t n, struct err *e)
{
	struct httpc c = p->a->c;
	struct httpc_resp resp;
	int r;

	/* a large object over a slow link: 30 s plus a second per MiB */
	c.timeout_ms = CLI_API_TIMEOUT_MS + (int64_t)n / 1024;
	buf_init(&resp.body, 64 * 1024);
	r = hs ? httpc_session_do(hs, &c, rq, &resp, e) : httpc_do(&c, rq, &resp, e);
	if (r == 0 && resp.status >= 400) {
		json_t *j =
		    json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		json_t *er = json_object_get(j, "error");
		const char *code = json_string_value(json_object_get(er, "code"));
		const char *msg = json_string_value(json_object_get(er, "message"));
		if (code && !strcmp(code, "digest_mismatch"))
			r = err_set(
			    e, CAIRN_ECORRUPT,
			    "object %s (%s) in the local cache %s does not match its digest: %s; "
			    "remove that directory and build again",
			    o->hex, o->path[0] ? o->path : "the manifest",
			    objstore_state_dir(p->os), msg ? msg : "");
		else
			r = err_set(e, resp.status == 413 ? E2BIG : CAIRN_ECHECK,
				    "uploading %s (%s, %lld bytes) to %s: %s (%ld %s)", o->hex,
				    o->path[0] ? o->path : "the manifest", (long long)o->size,
				    cli_api_where(p->a), msg ? msg : "refused", resp.status,
				    code ? code : "error");
		json_decref(j);
	}
	buf_done(&resp.body);
	return r < 0 ? r : 0;
}

/* An object over CLI_PART_BYTES goes in parts read from the store file as they are sent, so
 * neither side holds more than one part; the controller hashes the whole at the last one. */
static int put_parts(struct pool *p, struct httpc_session *hs, const struct obj *o,
		     const char *file, struct err *e)
{
	char path[HASH_HEX_LEN + 96], *chunk = malloc(CLI_PART_BYTES);
	int fd = chunk ? open(file, O_RDONLY | O_CLOEXEC) : -1, r = 0;

	if (!chunk || fd < 0) {
		r = err_set(e, chunk ? errno : ENOMEM, "cannot read object %s (%s): %s", o->hex,
			    file, strerror(chunk ? errno : ENOMEM));
		goto out;
	}
	for (int64_t off = 0; off < o->size && r == 0;) {
		size_t want =
		    o->size - off < CLI_PART_BYTES ? (size_t)(o->size - off) : CLI_PART_BYTES;
		if ((r = fs_pread_all(fd, chunk, want, off)) < 0) {
			r = err_set(e, -r, "cannot read object %s (%s): %s", o->hex, file,
				    strerror(-r));
			break;
		}
		snprintf(path, sizeof(path), "/v1/objects/%s?offset=%lld&size=%lld", o->hex,
			 (long long)off, (long long)o->size);
		struct httpc_req rq = {.method = "PUT", .path = path, .body = chunk, .body_n = want};
		r = put_req(p, hs, o, &rq, want, e);
		off += (int64_t)want;
	}
out:
	if (fd >= 0)
		close(fd);
	free(chunk);
	return r;
}

static int put_one(struct pool *p, struct httpc_session *hs, const struct obj *o, struct err *e)
{
	char *file = objstore_path(p->os, o->hex), *path = xasprintf("/v1/objects/%s", o->hex);
	struct httpc_req rq = {.method = "PUT", .path = path, .body_file = file};
	int r = o->size > CLI_PART_BYTES ? put_parts(p, hs, o, file, e)
					 : put_req(p, hs, o, &rq, (size_t)o->size, e);
	free(file);
	free(path);
	return r;
}

static void progress(struct pool *p, bool last)
{
	if (!p->tty)
		return;
	fprintf(stderr, "\ruploading: %zu/%zu objects, %.1f/%.1f MiB%s", p->done, p->total,
		(double)p->done_bytes / 1048576.0, (double)p->total_bytes / 1048576.0,
		last ? "\n" : "");
}

static void *uploader(void *arg)
{
	struct pool *p = arg;
	struct httpc_session *hs = httpc_session_new(); /* one connection per uploader */
	for (;;) {
		struct obj *o = NULL;
		struct err e;
		pthread_mutex_lock(&p->mu);
		while (p->r == 0 && p->next < p->n && !o) {
			if (p->v[p->next].missing)
				o = &p->v[p->next];
			p->next++;
		}
		pthread_mutex_unlock(&p->mu);
		if (!o)
			break;
		int r = put_one(p, hs, o, &e);
		pthread_mutex_lock(&p->mu);
		if (r < 0 && p->r == 0) {
			p->r = r;
			p->err = e;
		} else if (r == 0) {
			p->done++;
			p->done_bytes += o->size;
			progress(p, false);
		}
		pthread_mutex_unlock(&p->mu);
	}
	httpc_session_free(hs);
	return NULL;
}

static int upload_missing(struct pool *p, struct err *e)
{
	pthread_t th[CLI_UPLOAD_PARALLEL];
	size_t k = p->total < CLI_UPLOAD_PARALLEL ? p->total : CLI_UPLOAD_PARALLEL, started = 0;

	pthread_mutex_init(&p->mu, NULL);
	for (; started < k; started++)
		if (pthread_create(&th[started], NULL, uploader, p) != 0)
			break;
	if (started == 0 && k > 0)
		uploader(p); /* no thread to be had: upload from here, one at a time */
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	if (p->r < 0) {
		if (p->tty)
			fputc('\n', stderr);
		*e = p->err;
		return p->r;
	}
	if (k)
		progress(p, true);
	return 0;
}

/* ---- registration ---------------------------------------------------------------------------- */

static int register_release(struct cli_api *a, const char *id, const char *tag, bool tag_optional,
			    struct cli_upload_result *out, struct err *e)
{
	char code[CLI_API_CODE_MAX] = "";
	json_t *ans = NULL;
	long status = 0;
	int r;

	r = cli_api_call_code(a, "POST", "/v1/releases",
			      json_pack("{s:s,s:s?}", "id", id, "tag", tag && *tag ? tag : NULL),
			      NULL, &status, &ans, code, e);
	if (r < 0 && tag_optional && tag && *tag && !strcmp(code, "tag_taken")) {
		snprintf(out->dropped_tag, sizeof(out->dropped_tag), "%s", tag);
		code[0] = '\0';
		r = cli_api_call_code(a, "POST", "/v1/releases", json_pack("{s:s}", "id", id), NULL,
				      &status, &ans, code, e);
	}
	if (r < 0) {
		if (!strcmp(code, "tag_taken"))
			e->code = CAIRN_EINPUT; /* as for a local build: a usage error, exit 2 */
		if (!strcmp(code, "missing_object"))
			err_prefix(e,
				   "the controller still lacks an object of %.19s (was it removed "
				   "meanwhile?); run the command again",
				   id);
		return r;
	}
	const char *t = json_string_value(json_object_get(ans, "tag"));
	snprintf(out->tag, sizeof(out->tag), "%s", t ? t : "");
	out->existed = json_is_true(json_object_get(ans, "existed"));
	json_decref(ans);
	return 0;
}

/* A tag the controller already gives another release refuses the build before anything is
 * uploaded (the controller checks again when the release is registered). */
static int check_tag(struct cli_api *a, const char *app, const char *id, const char *tag,
		     struct err *e)
{
	char path[64 + NAME_APP_MAX];
	json_t *ans = NULL, *rel;
	struct err ge;
	long status = 0;
	size_t i;
	int r = 0;

	snprintf(path, sizeof(path), "/v1/apps/%s", app);
	if (cli_api_call(a, "GET", path, NULL, NULL, &status, &ans, &ge) < 0)
		return status == 404 ? 0 : (*e = ge, -ge.code);
	json_array_foreach(json_object_get(ans, "releases"), i, rel) {
		const char *rid = json_string_value(json_object_get(rel, "id"));
		size_t k;
		json_t *t;
		json_array_foreach(json_object_get(rel, "tags"), k, t) {
			if (rid && strcmp(rid, id) && !strcmp(json_string_value(t) ?: "", tag)) {
				r = err_set(e, CAIRN_EINPUT,
					    "tag '%s' already names release %.19s of app %s on the "
					    "controller; tags never move — choose another tag (nothing "
					    "was uploaded)",
					    tag, rid, app);
				goto done;
			}
		}
	}
done:
	json_decref(ans);
	return r;
}

int cli_upload_release(struct cli_api *a, const struct cli_ctx *ctx, struct objstore *os,
		       const char *id, const char *tag, bool tag_optional,
		       struct cli_upload_result *out, struct err *e)
{
	struct cli_upload_result res;
	struct manifest *m = NULL;
	struct obj *v = NULL;
	size_t n = 0;
	int r;

	memset(&res, 0, sizeof(res));
	if ((r = release_load(os, id, &m, e)) < 0)
		return r;
	if (tag && *tag && !tag_optional && (r = check_tag(a, m->app, id, tag, e)) < 0)
		goto done;
	v = collect(os, str_starts(id, "sha256:") ? id + 7 : id, m, &n);
	if ((r = ask_missing(a, v, n, e)) < 0)
		goto done;
	struct pool p = {
	    .a = a, .os = os, .v = v, .n = n, .tty = !ctx->json && isatty(STDERR_FILENO)};
	for (size_t i = 0; i < n; i++) {
		if (v[i].missing) {
			p.total++;
			p.total_bytes += v[i].size;
		} else {
			res.skipped++;
			res.skipped_bytes += v[i].size;
		}
	}
	res.objects = n;
	if (!ctx->json)
		fprintf(
		    stderr, "uploading %zu of %zu objects (%.1f MiB) to %s; %zu already there\n",
		    p.total, n, (double)p.total_bytes / 1048576.0, cli_api_where(a), res.skipped);
	if ((r = upload_missing(&p, e)) < 0)
		goto done;
	res.uploaded = p.total;
	res.uploaded_bytes = p.total_bytes;
	if ((r = register_release(a, id, tag, tag_optional, &res, e)) < 0)
		goto done;
	*out = res;
done:
	free(v);
	manifest_free(m);
	return r;
}
