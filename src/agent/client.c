/* client: the agent API from the other side — one HTTP/1.1 request per call with libcurl,
 * JSON in and out, the agent's {"error":{code,message}} turned into a struct err. The
 * transport is a vtable: a unix socket today, SSH (a forwarded socket) later. */
#include "agent/agent.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ANSWER_MAX (64u * 1024 * 1024)

struct transport_ops {
	/* Prepares a curl handle for one request to PATH (sets URL and the way there). */
	int (*prepare)(struct agent_client *c, CURL *h, const char *path, struct err *e);
	void (*free)(struct agent_client *c);
};

struct agent_client {
	const struct transport_ops *ops;
	char *socket_path; /* owned: unix transport */
	char *sock_arg;	   /* owned: the path curl is given (may go through /proc/self/fd) */
	int dirfd;	   /* owned: for socket paths longer than sun_path, else -1 */
	int64_t timeout_ms;
};

static int unix_prepare(struct agent_client *c, CURL *h, const char *path, struct err *e)
{
	char *url = xasprintf("http://agent%s", path);
	UNUSED(e);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->sock_arg);
	curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	return 0;
}

static void unix_free(struct agent_client *c)
{
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c->socket_path);
	free(c->sock_arg);
}

static const struct transport_ops unix_ops = {unix_prepare, unix_free};

int agent_client_new_unix(const char *socket_path, int64_t timeout_ms, struct agent_client **out,
			  struct err *e)
{
	struct agent_client *c = xcalloc(1, sizeof(*c));
	const char *slash = strrchr(socket_path, '/');

	c->ops = &unix_ops;
	c->socket_path = xstrdup(socket_path);
	c->dirfd = -1;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
	/* sun_path holds 108 bytes: reach a longer path through the directory's fd */
	if (strlen(socket_path) >= 100 && slash) {
		char *dir = xstrndup(socket_path, (size_t)(slash - socket_path));
		c->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		free(dir);
		if (c->dirfd < 0) {
			int r = err_set(e, errno, "cannot open the directory of %s: %s",
					socket_path, strerror(errno));
			agent_client_free(c);
			return r;
		}
		c->sock_arg = xasprintf("/proc/self/fd/%d/%s", c->dirfd, slash + 1);
	} else {
		c->sock_arg = xstrdup(socket_path);
	}
	*out = c;
	return 0;
}

void agent_client_free(struct agent_client *c)
{
	if (!c)
		return;
	c->ops->free(c);
	free(c);
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	return buf_add(b, p, size * n) == 0 ? size * n : 0;
}

static int code_of(const char *code)
{
	if (!code)
		return EIO;
	if (!strcmp(code, "input"))
		return CAIRN_EINPUT;
	if (!strcmp(code, "not_found"))
		return CAIRN_ENOTFOUND;
	if (!strcmp(code, "conflict"))
		return EEXIST;
	if (!strcmp(code, "corrupt"))
		return CAIRN_ECORRUPT;
	return EIO;
}

/* One request: `data` (n bytes, of content type ctype) is the body when not NULL. */
static int perform(struct agent_client *c, const char *method, const char *path, const char *ctype,
		   const void *data, size_t n, long *out_status, json_t **out_json, struct err *e)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	struct buf ans;
	char *text = NULL, cerr[CURL_ERROR_SIZE] = "";
	long status = 0;
	json_t *j = NULL;
	int r;

	if (!h)
		return err_set(e, ENOMEM, "cannot create an HTTP client");
	buf_init(&ans, ANSWER_MAX);
	if ((r = c->ops->prepare(c, h, path, e)) < 0)
		goto done;
	text = xasprintf("Content-Type: %s", ctype);
	hdrs = curl_slist_append(hdrs, text);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (data || !strcmp(method, "POST") || !strcmp(method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(data ? n : 0));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, data ? data : "");
	}
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		r = err_set(e, cc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : EIO,
			    "the agent on %s does not answer: %s%s", c->socket_path,
			    cerr[0] ? cerr : curl_easy_strerror(cc),
			    cc == CURLE_COULDNT_CONNECT ? " (is 'cairn agent' running?)" : "");
		goto done;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (out_status)
		*out_status = status;
	j = ans.len ? json_loadb(buf_str(&ans), ans.len, 0, NULL) : NULL;
	if (status < 200 || status > 299) {
		json_t *er = json_object_get(j, "error");
		const char *msg = json_string_value(json_object_get(er, "message"));
		r = err_set(e, code_of(json_string_value(json_object_get(er, "code"))),
			    "agent: %s (HTTP %ld)", msg ? msg : "no error message", status);
		goto done;
	}
	if (!j) {
		r = err_set(e, EIO, "agent: the answer to %s %s is not JSON", method, path);
		goto done;
	}
	if (out_json) {
		*out_json = j;
		j = NULL;
	}
	r = 0;
done:
	json_decref(j);
	curl_slist_free_all(hdrs);
	free(text);
	buf_done(&ans);
	curl_easy_cleanup(h);
	return r;
}

int agent_client_call(struct agent_client *c, const char *method, const char *path,
		      const json_t *body, long *out_status, json_t **out_json, struct err *e)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !text)
		return err_set(e, ENOMEM, "out of memory");
	int r = perform(c, method, path, "application/json", text, text ? strlen(text) : 0,
			out_status, out_json, e);
	free(text);
	return r;
}

int agent_client_put(struct agent_client *c, const char *path, const void *data, size_t n,
		     long *out_status, json_t **out_json, struct err *e)
{
	return perform(c, "PUT", path, "application/octet-stream", data ? data : "", n, out_status,
		       out_json, e);
}
