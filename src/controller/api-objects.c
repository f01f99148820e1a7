/* controller/api-objects: object upload by digest — which objects are missing, PUT of one
 * object (its digest checked before it becomes visible) and registration of a release whose
 * manifest and objects are all present. The loop thread only parses and hands the request's
 * bytes over; hashing, disk and database work run on the store worker. Also here: the
 * per-route body limits evhttp 2.1 has no hook for (see "body limits" below). */
#include "controller/controller-internal.h"

#include "release/release.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A task of this file: the server frees it as a struct task (first member); everything it owns
 * beyond that is released by the time its work() returns. Answers, errors included, are built
 * by work() into t.answer (freed with the task). */
struct obj_task {
	struct task t;
	struct evbuffer *body; /* owned until work() ends: PUT's bytes */
	struct objstore_digests dg; /* owned until work() ends: missing-list request */
	struct api_release_body rel;
	char hex[HASH_HEX_LEN + 1];
	int64_t offset, size; /* PUT of a part: ?offset=&size= (size -1: the whole object) */
};

static int open_objects(struct obj_task *ot, struct objstore **out)
{
	int r = objstore_open(ot->t.srv->o.state_dir, out, &ot->t.err);
	if (r < 0)
		ot->t.status = 500;
	return r;
}

/* The error answer {"error":{"code","message"}} from t.err, with the status. */
static json_t *fail(struct obj_task *ot, int status, const char *code)
{
	json_t *er = json_pack("{s:s,s:s}", "code", code, "message", ot->t.err.msg);
	ot->t.status = status;
	json_decref(ot->t.answer);
	ot->t.answer = er ? json_pack("{s:o}", "error", er) : NULL;
	return er; /* borrowed, for extra fields; NULL when out of memory */
}

/* ---- POST /v1/objects/missing ------------------------------------------------------------ */

static void missing_work(struct task *t)
{
	struct obj_task *ot = (struct obj_task *)t;
	struct objstore *os = NULL;
	json_t *arr;

	if (open_objects(ot, &os) < 0)
		goto out;
	arr = json_array();
	for (size_t i = 0; arr && i < ot->dg.n; i++)
		if (!objstore_has(os, ot->dg.v[i]) &&
		    json_array_append_new(arr, json_string(ot->dg.v[i])))
			break;
	t->answer =
	    arr ? json_pack("{s:o,s:I}", "missing", arr, "asked", (json_int_t)ot->dg.n) : NULL;
	t->status = 200;
out:
	objstore_free(os);
	objstore_digests_done(&ot->dg);
}

/* ---- PUT /v1/objects/{hex} ---------------------------------------------------------------- */

/* Hashes the buffer's chains (no copy) and, with fd >= 0, writes them. */
static int pass_chains(struct evbuffer *b, int fd, char out_hex[HASH_HEX_LEN + 1])
{
	int n = evbuffer_peek(b, -1, NULL, NULL, 0), r = 0;
	struct evbuffer_iovec *v = n > 0 ? calloc((size_t)n, sizeof(*v)) : NULL;
	struct hasher *h = out_hex ? hasher_new() : NULL;

	if (n > 0 && !v)
		r = -ENOMEM;
	else if (n > 0)
		n = evbuffer_peek(b, -1, NULL, v, n);
	for (int i = 0; r == 0 && i < n; i++) {
		if (h)
			hasher_update(h, v[i].iov_base, v[i].iov_len);
		if (fd >= 0)
			r = fs_write_all(fd, v[i].iov_base, v[i].iov_len);
	}
	if (h)
		hasher_final(h, out_hex);
	free(v);
	return r;
}

/* One part of an object sent in pieces (release/objstore_part_put does the bookkeeping). */
static void put_part(struct obj_task *ot, struct objstore *os)
{
	struct task *t = &ot->t;
	size_t n = evbuffer_get_length(ot->body);
	const unsigned char *p = n ? evbuffer_pullup(ot->body, -1) : (const unsigned char *)"";
	int64_t received = 0;
	bool added = false;
	json_t *er;
	int r;

	if (!p) {
		t->status = 503;
		err_set(&t->err, ENOMEM, "out of memory");
		return;
	}
	r = objstore_part_put(os, ot->hex, ot->offset, ot->size, p, n, &received, &added, &t->err);
	if (r == 0) {
		t->status = 202;
		t->answer = json_pack("{s:s,s:I,s:I}", "digest", ot->hex, "received",
				      (json_int_t)received, "size", (json_int_t)ot->size);
	} else if (r == 1) {
		t->status = added ? 201 : 200;
		t->answer = json_pack("{s:s,s:I,s:b}", "digest", ot->hex, "size",
				      (json_int_t)ot->size, "stored", added);
	} else if (t->err.code == EEXIST && (er = fail(ot, 409, "conflict"))) {
		json_object_set_new(t->answer, "received", json_integer(received));
	} else if (t->err.code == EBUSY) {
		fail(ot, 409, "conflict");
	} else if (t->err.code == CAIRN_ECORRUPT) {
		fail(ot, 422, "digest_mismatch");
	} else if (t->err.code == CAIRN_EINPUT) {
		fail(ot, 400, "input");
	} else {
		t->status = 500;
	}
}

static void put_work(struct task *t)
{
	struct obj_task *ot = (struct obj_task *)t;
	struct objstore *os = NULL;
	char got[HASH_HEX_LEN + 1], *tmp = NULL;
	size_t n = evbuffer_get_length(ot->body);
	bool added = false;
	int fd = -1, r;

	if (ot->size > 0) {
		if (open_objects(ot, &os) == 0)
			put_part(ot, os);
		goto out;
	}

	if (pass_chains(ot->body, -1, got) < 0) {
		t->status = 503;
		err_set(&t->err, ENOMEM, "out of memory");
		goto out;
	}
	if (strcmp(got, ot->hex)) {
		err_set(&t->err, CAIRN_ECORRUPT,
			"the %zu bytes sent hash to %s, not %s; nothing was stored (re-send the "
			"object's exact bytes)",
			n, got, ot->hex);
		fail(ot, 422, "digest_mismatch");
		goto out;
	}
	if (open_objects(ot, &os) < 0)
		goto out;
	/* a stored copy whose bytes no longer match its digest is replaced (repair) */
	if (!objstore_has(os, ot->hex) || objstore_verify(os, ot->hex, NULL) < 0) {
		if (objstore_tmp_open(os, &fd, &tmp, &t->err) < 0) {
			t->status = 500;
			goto out;
		}
		if ((r = pass_chains(ot->body, fd, NULL)) < 0 || close(fd) < 0) {
			if (r == 0)
				r = -errno;
			fd = -1;
			t->status = 500;
			err_set(&t->err, -r, "cannot write object %s: %s", ot->hex, strerror(-r));
			goto out;
		}
		fd = -1;
		if (objstore_tmp_commit(os, tmp, ot->hex, &added, &t->err) < 0) {
			t->status = 500;
			goto out;
		}
		free(tmp);
		tmp = NULL;
	}
	t->status = added ? 201 : 200;
	t->answer =
	    json_pack("{s:s,s:I,s:b}", "digest", ot->hex, "size", (json_int_t)n, "stored", added);
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	objstore_free(os);
	evbuffer_free(ot->body);
	ot->body = NULL;
}

/* ---- POST /v1/releases --------------------------------------------------------------------- */

/* 409 missing_object naming the digest (and the file that needs it; NULL: the manifest). */
static void missing_fail(struct obj_task *ot, const char *hex, const char *path)
{
	json_t *er;
	if (path)
		err_set(&ot->t.err, CAIRN_ENOTFOUND,
			"object %s (file %.200s) is not stored here; upload it first (PUT "
			"/v1/objects/%s)",
			hex, path, hex);
	else
		err_set(&ot->t.err, CAIRN_ENOTFOUND,
			"the manifest %s is not stored here; upload it first (PUT /v1/objects/%s)",
			hex, hex);
	if ((er = fail(ot, 409, "missing_object"))) {
		json_object_set_new(er, "digest", json_string(hex));
		if (path)
			json_object_set_new(er, "path", json_string(path));
	}
}

static void release_work(struct task *t)
{
	struct obj_task *ot = (struct obj_task *)t;
	struct store *st = t->srv->wr;
	struct objstore *os = NULL;
	struct manifest *m = NULL;
	struct store_release rel, old;
	struct err ge;
	int r;

	if (!st) {
		t->status = 500;
		err_set(&t->err, EIO, "the state database is not open; see the controller's log");
		return;
	}
	if (open_objects(ot, &os) < 0)
		return;
	memset(&rel, 0, sizeof(rel));
	snprintf(rel.id, sizeof(rel.id), "sha256:%s", ot->rel.hex);
	if (!objstore_has(os, ot->rel.hex)) {
		missing_fail(ot, ot->rel.hex, NULL);
		goto out;
	}
	if (release_load(os, rel.id, &m, &t->err) < 0) {
		fail(ot, 422, t->err.code == CAIRN_ECORRUPT ? "corrupt" : "input");
		goto out;
	}
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		if (en->type != MANIFEST_FILE)
			continue;
		if (!objstore_has(os, en->digest)) {
			missing_fail(ot, en->digest, en->path);
			goto out;
		}
		rel.n_files++;
		rel.bytes += en->size;
	}
	if ((r = objstore_sync(os)) < 0) {
		t->status = 500;
		err_set(&t->err, -r, "cannot make the objects durable: %s", strerror(-r));
		goto out;
	}
	snprintf(rel.app, sizeof(rel.app), "%s", m->app);
	snprintf(rel.tag, sizeof(rel.tag), "%s", ot->rel.tag);
	rel.created_at = time_now_ns() / 1000000000;
	rel.state = RELEASE_UNTESTED;
	r = store_release_get(st, rel.id, &old, &ge);
	if (r < 0 && ge.code != CAIRN_ENOTFOUND) {
		t->err = ge;
		t->status = 500;
		goto out;
	}
	bool existed = r == 0;
	if (store_release_put(st, &rel, &t->err) < 0) {
		if (t->err.code == CAIRN_EINPUT)
			fail(ot, 409, "tag_taken");
		else
			t->status = 500;
		goto out;
	}
	if (store_release_get(st, rel.id, &old, &t->err) < 0) {
		t->status = 500;
		goto out;
	}
	json_t *tags = store_release_tags_json(st, rel.id, &t->err);
	if (!tags) {
		t->status = 500;
		goto out;
	}
	/* "tag": the one just given, else the first the release has; "tags": all of them */
	const char *tag = rel.tag[0] ? rel.tag : old.tag;
	t->status = existed ? 200 : 201;
	t->answer = json_pack("{s:s,s:s,s:s?,s:o,s:I,s:I,s:b}", "id", rel.id, "app", rel.app, "tag",
			      tag[0] ? tag : NULL, "tags", tags, "files", (json_int_t)rel.n_files,
			      "bytes", (json_int_t)rel.bytes, "existed", existed);
out:
	manifest_free(m);
	objstore_free(os);
}

/* ---- body limits ---------------------------------------------------------------------------
 * evhttp 2.1 compares a request's Content-Length with its connection's limit right after the
 * headers and has no per-request hook before that (evhttp_set_newreqcb is 2.2). conns.c follows
 * each head as it arrives and, when it ends, sets the limit of the route its request line names
 * (the large ones only for the unix socket or a head with the token). Handlers check their own
 * bound again after reading. */

int64_t api_objects_body_limit(const char *p, size_t n)
{
	static const struct {
		const char *line;
		int64_t max;
	} routes[] = {
	    {"PUT /v1/objects/", API_OBJECT_MAX},
	    {"POST /v1/objects/missing ", OBJSTORE_DIGESTS_BODY_MAX},
	    {"POST /v1/objects/missing?", OBJSTORE_DIGESTS_BODY_MAX},
	};
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		size_t k = strlen(routes[i].line);
		if (n >= k && !memcmp(p, routes[i].line, k))
			return routes[i].max;
	}
	return API_BODY_MAX;
}

/* ---- answers and dispatch ------------------------------------------------------------------ */

static void obj_done(struct task *t)
{
	if (!t->req)
		return;
	if (t->answer && t->status > 0)
		server_reply_json(t->req, t->status, json_incref(t->answer));
	else
		server_reply_error(t->req, t->status >= 400 ? t->status : 500,
				   server_code_for(&t->err), "%s", t->err.msg);
}

static bool method_is(struct evhttp_request *req, enum evhttp_cmd_type m, const char *allow)
{
	if (evhttp_request_get_command(req) == m)
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	server_reply_error(req, 405, "method_not_allowed", "this endpoint takes %s", allow);
	return false;
}

/* The body as one contiguous string for the JSON parsers, bounded by max. */
static const char *json_body(struct evhttp_request *req, size_t max, size_t *out_n)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	if (n > max) {
		server_reply_error(req, 413, "too_large", "body is larger than %zu bytes", max);
		return NULL;
	}
	*out_n = n;
	return n ? (const char *)evbuffer_pullup(in, -1) : "";
}

void api_objects_handle(struct server *srv, struct evhttp_request *req, const struct api_path *p)
{
	struct obj_task *ot;
	const char *body;
	size_t n = 0;

	switch (p->route) {
	case ROUTE_OBJECTS_MISSING:
		if (!method_is(req, EVHTTP_REQ_POST, "POST") ||
		    !(body = json_body(req, OBJSTORE_DIGESTS_BODY_MAX, &n)))
			return;
		break;
	case ROUTE_RELEASES:
		if (!method_is(req, EVHTTP_REQ_POST, "POST") ||
		    !(body = json_body(req, API_BODY_MAX, &n)))
			return;
		break;
	default:
		if (!method_is(req, EVHTTP_REQ_PUT, "PUT"))
			return;
		if (!p->hex[0]) {
			server_reply_error(
			    req, 400, "input",
			    "an object's name is its SHA-256 digest: 64 lowercase hex "
			    "characters");
			return;
		}
		body = NULL;
		break;
	}
	if (!(ot = calloc(1, sizeof(*ot)))) {
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
	if (p->route == ROUTE_OBJECTS_MISSING || p->route == ROUTE_RELEASES) {
		int r = p->route == ROUTE_RELEASES
			    ? api_parse_release_body(body, n, &ot->rel, &ot->t.err)
			    : objstore_parse_digests(body, n, &ot->dg, &ot->t.err);
		if (r < 0) {
			server_reply_error(req, server_status_for(&ot->t.err),
					   server_code_for(&ot->t.err), "%s", ot->t.err.msg);
			free(ot);
			return;
		}
		ot->t.work = p->route == ROUTE_RELEASES ? release_work : missing_work;
	} else {
		/* the bytes move to the task's buffer without a copy */
		if (!(ot->body = evbuffer_new()) ||
		    evbuffer_add_buffer(ot->body, evhttp_request_get_input_buffer(req)) < 0) {
			if (ot->body)
				evbuffer_free(ot->body);
			free(ot);
			server_reply_error(req, 503, "internal", "out of memory");
			return;
		}
		memcpy(ot->hex, p->hex, sizeof(ot->hex));
		if (objstore_parse_part_query(
			evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), &ot->offset,
			&ot->size, &ot->t.err) < 0) {
			server_reply_error(req, 400, "input", "%s", ot->t.err.msg);
			evbuffer_free(ot->body);
			free(ot);
			return;
		}
		ot->t.work = put_work;
	}
	ot->t.req = req;
	ot->t.route = p->route;
	ot->t.done = obj_done;
	server_submit(srv, &ot->t);
}
