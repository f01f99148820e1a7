/* base/httpc: blocking HTTP requests through libcurl (unix socket or TCP), bounded answers. */
#include "base/httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	const struct httpc_req *rq;
	struct httpc_resp *out;
	bool stopped, too_big;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	if (s->rq->on_chunk) {
		if (!s->rq->on_chunk(s->rq->ctx, p, n)) {
			s->stopped = true;
			return 0;
		}
		return n;
	}
	if (buf_add(&s->out->body, p, n) < 0) {
		s->too_big = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	if (n > 9 && !strncasecmp(p, "Location:", 9)) {
		struct slice v = slice_trim((struct slice){ p + 9, n - 9 });
		size_t k = v.n < sizeof(s->out->location) - 1 ? v.n : sizeof(s->out->location) - 1;
		memcpy(s->out->location, v.p, k);
		s->out->location[k] = '\0';
	}
	return n;
}

/* One request on handle h (fresh, or reset: its connection cache survives a reset). */
static int do_on(CURL *h, const struct httpc *c, const struct httpc_req *rq,
		 struct httpc_resp *out, struct err *e)
{
	struct curl_slist *hdrs = NULL;
	struct sink s = { rq, out, false, false };
	char *url, *auth = NULL;
	CURLcode rc;
	FILE *upload = NULL;
	int r = 0;

	if (asprintf(&url, "%s%s", c->base_url, rq->path) < 0)
		return err_set(e, ENOMEM, "out of memory");
	out->status = 0;
	out->location[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (c->unix_path)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(c->connect_timeout_ms ? c->connect_timeout_ms : 5000));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
	if (rq->body_file) {
		struct stat sb;
		if (!(upload = fopen(rq->body_file, "rbe")) || fstat(fileno(upload), &sb) < 0) {
			r = err_set(e, errno, "cannot read %s: %s", rq->body_file, strerror(errno));
			if (upload)
				fclose(upload);
			free(url);
			return r;
		}
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READDATA, upload);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)sb.st_size);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	} else if (rq->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_n);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	for (size_t i = 0; rq->headers && rq->headers[i]; i++)
		hdrs = curl_slist_append(hdrs, rq->headers[i]);
	if (c->token && asprintf(&auth, "Authorization: Bearer %s", c->token) >= 0)
		hdrs = curl_slist_append(hdrs, auth);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

	int64_t t0 = time_mono_ns();
	rc = curl_easy_perform(h);
	out->latency_ms = (time_mono_ns() - t0) / 1000000;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && s.stopped)) {
		const char *where = c->unix_path ? c->unix_path : c->base_url;
		if (s.too_big)
			r = err_set(e, E2BIG, "answer from %s is larger than %zu bytes", where,
				    out->body.max);
		else if (rc == CURLE_OPERATION_TIMEDOUT)
			r = err_set(e, ETIMEDOUT, "%s %s: no answer from %s in %lld ms", rq->method,
				    rq->path, where, (long long)c->timeout_ms);
		else if (rc == CURLE_COULDNT_CONNECT)
			r = err_set(e, ECONNREFUSED, "cannot connect to %s", where);
		else
			r = err_set(e, EIO, "%s %s via %s: %s", rq->method, rq->path, where,
				    curl_easy_strerror(rc));
	}
	curl_slist_free_all(hdrs);
	if (upload)
		fclose(upload);
	free(url);
	free(auth);
	return r;
}

int httpc_do(const struct httpc *c, const struct httpc_req *rq, struct httpc_resp *out,
	     struct err *e)
{
	CURL *h;
	int r;
	pthread_once(&curl_once, curl_init_once);
	if (!(h = curl_easy_init()))
		return err_set(e, ENOMEM, "cannot start an HTTP client");
	r = do_on(h, c, rq, out, e);
	curl_easy_cleanup(h);
	return r;
}

struct httpc_session {
	CURL *h; /* owned; keeps its connection between requests */
};

struct httpc_session *httpc_session_new(void)
{
	struct httpc_session *s = calloc(1, sizeof(*s));
	pthread_once(&curl_once, curl_init_once);
	if (s && !(s->h = curl_easy_init())) {
		free(s);
		s = NULL;
	}
	return s;
}

void httpc_session_free(struct httpc_session *s)
{
	if (!s)
		return;
	curl_easy_cleanup(s->h);
	free(s);
}

int httpc_session_do(struct httpc_session *s, const struct httpc *c, const struct httpc_req *rq,
		     struct httpc_resp *out, struct err *e)
{
	curl_easy_reset(s->h);
	return do_on(s->h, c, rq, out, e);
}
