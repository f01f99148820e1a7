/* base/httpc: a small blocking HTTP/1.1 client over libcurl — to a unix socket or to TCP, with
 * an optional bearer token, bounded answers and timeouts. Used by the CLI (API client), the
 * controller (agent calls, probes, acceptance checks) and tests. Never logs above debug. */
#ifndef CAIRN_BASE_HTTPC_H
#define CAIRN_BASE_HTTPC_H

#include "base/base.h"

struct httpc {
	const char *unix_path; /* connect here (CURLOPT_UNIX_SOCKET_PATH), or NULL for TCP */
	const char *base_url;  /* "http://localhost" for a unix socket, "http://HOST:PORT" */
	const char *token;     /* bearer token, or NULL */
	int64_t timeout_ms;    /* whole request; 0 = none (streams) */
	int64_t connect_timeout_ms; /* 0 = 5s */
};

/* Called with each piece of the body as it arrives; return false to stop reading. */
typedef bool (*httpc_chunk_cb)(void *ctx, const char *p, size_t n);

struct httpc_req {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* "/v1/jobs/3" */
	const char *const *headers; /* "Name: value" strings, NULL-terminated, or NULL */
	const char *body;   /* may be NULL */
	size_t body_n;
	const char *body_file; /* instead of body: this file's bytes, streamed (octet-stream) */
	httpc_chunk_cb on_chunk; /* stream the body here instead of into out_body */
	void *ctx;
};

struct httpc_resp {
	long status;
	struct buf body;   /* init'd by the caller (bounded); filled when on_chunk is NULL */
	char location[512]; /* Location header, "" when none */
	int64_t latency_ms;
};

/* 0 when an answer came (any status); -errno with e set when none did (connection refused,
 * timeout: -ETIMEDOUT, stopped by on_chunk: 0). */
int httpc_do(const struct httpc *c, const struct httpc_req *rq, struct httpc_resp *out,
	     struct err *e);

/* A reusable connection (HTTP keep-alive) for many requests to one server from one thread at a
 * time: a bulk client (object upload) makes one per worker instead of a connection per
 * request. _new returns NULL when out of memory; _free(NULL) is a no-op. */
struct httpc_session;
struct httpc_session *httpc_session_new(void);
void httpc_session_free(struct httpc_session *s);
/* httpc_do on the session's connection (reconnecting when the server closed it). */
int httpc_session_do(struct httpc_session *s, const struct httpc *c, const struct httpc_req *rq,
		     struct httpc_resp *out, struct err *e);

#endif
