/* objects: the agent API's object routes (docs/agent.md) — which of a list of objects this
 * host lacks, an object upload checked against its digest before it becomes visible, and the
 * re-hash of a whole release after a push. Hashing and disk writes run on a worker. */
#include "agent/agent-internal.h"

#include "release/release.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- POST /v1/objects/missing (on a worker) -----------------------------------------------
 * The body is parsed by objstore_parse_digests (the controller's parser too) and each digest
 * costs a stat: up to OBJSTORE_DIGESTS_MAX of each, so neither runs on the loop. */

struct missing_job {
	struct work w;
	struct evhttp_request *req;
	struct objstore *os; /* borrowed: objstore_has is safe from a worker */
	char *body;          /* owned: the request body */
	size_t n;
	json_t *miss; /* owned: the answer's list */
	int r;
	struct err e;
};

static void missing_run(struct work *w)
{
	struct missing_job *j = (struct missing_job *)w;
	struct objstore_digests d;

	if ((j->r = objstore_parse_digests(j->body, j->n, &d, &j->e)) < 0)
		return;
	/* in request order; a digest asked twice is answered twice (clients dedupe) */
	j->miss = json_array();
	for (size_t i = 0; j->miss && i < d.n; i++)
		if (!objstore_has(j->os, d.v[i]) &&
		    json_array_append_new(j->miss, json_string(d.v[i])) < 0) {
			json_decref(j->miss);
			j->miss = NULL;
		}
	objstore_digests_done(&d);
	if (!j->miss)
		j->r = err_set(&j->e, ENOMEM, "out of memory");
}

static void missing_done(struct work *w)
{
	struct missing_job *j = (struct missing_job *)w;
	if (w->cancelled)
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
	else if (j->r < 0)
		agent_reply_err(j->req, &j->e);
	else
		agent_reply_json(j->req, 200, json_pack("{s:O}", "missing", j->miss));
	json_decref(j->miss);
	free(j->body);
	free(j);
}

static void handle_missing(struct agent *ag, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	struct missing_job *j;

	if (n > OBJSTORE_DIGESTS_BODY_MAX) {
		agent_reply_error(req, 413, "input", "body is larger than %zu bytes",
				  (size_t)OBJSTORE_DIGESTS_BODY_MAX);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j)
		j->body = malloc(n ? n : 1);
	if (!j || !j->body) {
		free(j);
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	evbuffer_copyout(in, j->body, n);
	j->n = n;
	j->w.run = missing_run;
	j->w.done = missing_done;
	j->req = req;
	j->os = ag->os;
	if (work_submit(ag->pool, &j->w) < 0) {
		free(j->body);
		free(j);
		agent_reply_error(req, 503, "busy", "too many jobs queued; try again");
	}
}

/* ---- PUT /v1/objects/{hex} (on a worker) ------------------------------------------------- */

struct put_job {
	struct work w;
	struct evhttp_request *req;
	struct objstore *os; /* borrowed: objstore writes are safe from a worker */
	char hex[HASH_HEX_LEN + 1];
	char *data; /* owned: the body */
	size_t n;
	int64_t offset, size; /* a part (size > 0): ?offset=&size= */
	int64_t received;     /* a part: bytes the agent holds after it */
	bool added;
	int r;
	struct err e;
};

static void put_run(struct work *w)
{
	struct put_job *j = (struct put_job *)w;
	char got[HASH_HEX_LEN + 1], *tmp = NULL;
	int fd;

	if (j->size > 0) {
		j->r = objstore_part_put(j->os, j->hex, j->offset, j->size, j->data, j->n,
					 &j->received, &j->added, &j->e);
		return;
	}
	hash_mem(j->data, j->n, got);
	if (strcmp(got, j->hex)) {
		j->r =
		    err_set(&j->e, CAIRN_ECORRUPT,
			    "the %zu bytes sent hash to %.12s…, not to %.12s…: the object was not "
			    "stored; send it again",
			    j->n, got, j->hex);
		return;
	}
	if (objstore_has(j->os, j->hex) && objstore_verify(j->os, j->hex, NULL) == 0)
		return; /* kept when intact; a corrupt copy is replaced (docs/releases.md "Repair") */
	if ((j->r = objstore_tmp_open(j->os, &fd, &tmp, &j->e)) < 0)
		return;
	j->r = fs_write_all(fd, j->data, j->n);
	close(fd);
	if (j->r < 0)
		j->r = err_set(&j->e, -j->r, "cannot write object %.12s…: %s", j->hex,
			       strerror(-j->r));
	else
		j->r = objstore_tmp_commit(j->os, tmp, j->hex, &j->added, &j->e);
	if (j->r < 0)
		unlink(tmp);
	free(tmp);
}

static void put_done(struct work *w)
{
	struct put_job *j = (struct put_job *)w;
	if (w->cancelled)
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
	else if (j->r < 0 && j->e.code == EEXIST) /* a part at the wrong offset: where to resume */
		agent_reply_json(j->req, 409,
				 json_pack("{s:{s:s,s:s},s:I}", "error", "code", "conflict",
					   "message", j->e.msg, "received",
					   (json_int_t)j->received));
	else if (j->r < 0)
		agent_reply_err(j->req, &j->e);
	else if (j->size > 0 && j->r == 0)
		agent_reply_json(j->req, 202,
				 json_pack("{s:s,s:I,s:I}", "digest", j->hex, "received",
					   (json_int_t)j->received, "size", (json_int_t)j->size));
	else
		agent_reply_json(j->req, j->added ? 201 : 200,
				 json_pack("{s:s,s:I,s:b}", "digest", j->hex, "size",
					   (json_int_t)(j->size > 0 ? j->size : (int64_t)j->n),
					   "added", j->added));
	free(j->data);
	free(j);
}

/* ?offset=N&size=T: one part of an object sent in pieces; size stays -1 for a whole object.
 * Answers 400 and returns -1 on a bad query. */
static int part_query(struct evhttp_request *req, int64_t *offset, int64_t *size)
{
	struct err e = {0};
	if (objstore_parse_part_query(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)),
				      offset, size, &e) < 0) {
		agent_reply_err(req, &e);
		return -1;
	}
	return 0;
}

static void handle_put(struct agent *ag, struct evhttp_request *req, const char *hex)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	struct put_job *j;

	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN)) {
		agent_reply_error(req, 400, "input",
				  "'%.80s' is not an object digest (64 lowercase hex digits)", hex);
		return;
	}
	if (n > AGENT_OBJECT_MAX) {
		agent_reply_error(req, 413, "input", "an object may have at most %d bytes",
				  AGENT_OBJECT_MAX);
		return;
	}
	int64_t offset = -1, size = -1;
	if (part_query(req, &offset, &size) < 0)
		return;
	j = calloc(1, sizeof(*j));
	if (j)
		j->data = malloc(n ? n : 1);
	if (!j || !j->data) {
		free(j);
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	evbuffer_copyout(in, j->data, n);
	j->n = n;
	j->offset = offset;
	j->size = size;
	j->w.run = put_run;
	j->w.done = put_done;
	j->req = req;
	j->os = ag->os;
	memcpy(j->hex, hex, sizeof(j->hex));
	if (work_submit(ag->pool, &j->w) < 0) {
		free(j->data);
		free(j);
		agent_reply_error(req, 503, "busy", "too many jobs queued; try again");
	}
}

/* ---- POST /v1/releases/{id}/verify (on a worker) ----------------------------------------- */

struct verify_job {
	struct work w;
	struct evhttp_request *req;
	struct objstore *os; /* borrowed */
	char id[HASH_ID_LEN + 1];
	size_t files;
	int64_t bytes;
	int r;
	struct err e;
};

static void verify_run(struct work *w)
{
	struct verify_job *j = (struct verify_job *)w;
	struct manifest *m = NULL;
	objstore_sync(j->os); /* what was pushed is durable before anyone relies on it */
	if ((j->r = release_verify(j->os, j->id, NULL, NULL, &j->e)) < 0)
		return;
	if ((j->r = release_load(j->os, j->id, &m, &j->e)) < 0)
		return;
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].type == MANIFEST_FILE) {
			j->files++;
			j->bytes += m->entries[i].size;
		}
	manifest_free(m);
}

static void verify_done(struct work *w)
{
	struct verify_job *j = (struct verify_job *)w;
	if (w->cancelled)
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
	else if (j->r < 0)
		agent_reply_err(j->req, &j->e);
	else
		agent_reply_json(j->req, 200,
				 json_pack("{s:s,s:I,s:I}", "id", j->id, "files",
					   (json_int_t)j->files, "bytes", (json_int_t)j->bytes));
	free(j);
}

static void handle_verify(struct agent *ag, struct evhttp_request *req, const char *id)
{
	const char *hex = str_starts(id, "sha256:") ? id + 7 : id;
	struct verify_job *j;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN)) {
		agent_reply_error(req, 400, "input",
				  "'%.80s' is not a release id (sha256:<64 hex>)", id);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	j->w.run = verify_run;
	j->w.done = verify_done;
	j->req = req;
	j->os = ag->os;
	snprintf(j->id, sizeof(j->id), "sha256:%s", hex);
	if (work_submit(ag->pool, &j->w) < 0) {
		free(j);
		agent_reply_error(req, 503, "busy", "too many jobs queued; try again");
	}
}

bool agent__objects_route(struct agent *ag, struct evhttp_request *req, char *segs[], int n)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	if (n == 3 && !strcmp(segs[1], "objects") && !strcmp(segs[2], "missing")) {
		if (m == EVHTTP_REQ_POST)
			handle_missing(ag, req);
		else
			agent_reply_error(req, 405, "input", "use POST /v1/objects/missing");
		return true;
	}
	if (n == 3 && !strcmp(segs[1], "objects")) {
		if (m == EVHTTP_REQ_PUT)
			handle_put(ag, req, segs[2]);
		else
			agent_reply_error(req, 405, "input",
					  "use PUT /v1/objects/{hex} with the bytes");
		return true;
	}
	if (n == 4 && !strcmp(segs[1], "releases") && !strcmp(segs[3], "verify")) {
		if (m == EVHTTP_REQ_POST)
			handle_verify(ag, req, segs[2]);
		else
			agent_reply_error(req, 405, "input", "use POST /v1/releases/{id}/verify");
		return true;
	}
	return false;
}
