/* server: the agent daemon's frame — the lock on the state directory, the unix socket (0600),
 * libevent's evhttp with its limits (header and body size, timeouts, open connections),
 * JSON replies and errors, SIGTERM/SIGINT through evsignal, and a shutdown that leaves every
 * instance running for the next agent. Routing and handlers live in api.c. */
#include "agent/agent-internal.h"

#include "proxy/proxy.h"
#include "release/release.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define MAX_HEADERS_BYTES (16 * 1024)
#define IO_TIMEOUT_S	  30
#define WORKERS		  4
#define WORK_QUEUE	  256

void agent_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = json_dumps(body, JSON_COMPACT);
	static const char *const reasons[][2] = {
	    {"200", "OK"},
	    {"201", "Created"},
	    {"400", "Bad Request"},
	    {"404", "Not Found"},
	    {"405", "Method Not Allowed"},
	    {"409", "Conflict"},
	    {"413", "Payload Too Large"},
	    {"422", "Unprocessable Entity"},
	    {"500", "Internal Server Error"},
	    {"503", "Service Unavailable"},
	};
	const char *reason = "OK";
	char code[8];

	snprintf(code, sizeof(code), "%d", status);
	for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
		if (!strcmp(reasons[i][0], code))
			reason = reasons[i][1];
	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	if (text) {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
	}
	free(text);
	evhttp_send_reply(req, status, reason, out);
	evbuffer_free(out);
}

void agent_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
		       ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_reply_json(req, status,
			 json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

void agent_reply_err(struct evhttp_request *req, const struct err *e)
{
	int status = 500;
	const char *code = "internal";
	switch (e->code) {
	case CAIRN_EINPUT:
	case EINVAL:
		status = 400, code = "input";
		break;
	case CAIRN_ENOTFOUND:
	case ENOENT:
		status = 404, code = "not_found";
		break;
	case EEXIST:
	case EBUSY:
		status = 409, code = "conflict";
		break;
	case CAIRN_ECORRUPT:
		status = 422, code = "corrupt";
		break;
	case E2BIG:
		status = 413, code = "input";
		break;
	}
	if (status >= 500)
		log_error("agent", "%s", e->msg);
	agent_reply_error(req, status, code, "%s", e->msg);
}

/* ---- connections: a bound on how many may be open at once -------------------------------
 * evhttp 2.1 has no per-connection hook before the first request, so a connection is counted
 * from its first request until it closes; one that never sends a request is closed by the
 * I/O timeout. Over the bound, a new connection's request is answered 503 and it is closed. */

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
	struct agent *ag = arg;
	ev_rest_freed(&ag->api_rest);
	for (size_t i = 0; i < ag->n_conns; i++)
		if (ag->conns[i] == conn) {
			ag->conns[i] = ag->conns[--ag->n_conns];
			return;
		}
}

static bool admit(struct agent *ag, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	if (!conn)
		return true;
	for (size_t i = 0; i < ag->n_conns; i++)
		if (ag->conns[i] == conn)
			return true;
	if (ag->n_conns >= AGENT_MAX_CONNS) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		return false;
	}
	ag->conns[ag->n_conns++] = conn;
	evhttp_connection_set_closecb(conn, on_conn_close, ag);
	return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct agent *ag = arg;
	if (!admit(ag, req)) {
		agent_reply_error(req, 503, "busy", "too many open connections to the agent (%d)",
				  AGENT_MAX_CONNS);
		return;
	}
	if (ag->shutting_down) {
		agent_reply_error(req, 503, "unavailable", "the agent is shutting down");
		return;
	}
	agent_api_route(ag, req);
}

/* ---- signals ------------------------------------------------------------------------------ */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent *ag = arg;
	UNUSED(what);
	log_info("agent", "signal %d: shutting down; instances keep running", (int)sig);
	ag->shutting_down = true;
	event_base_loopexit(ag->base, NULL);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static int take_lock(struct agent *ag, struct err *e)
{
	char *dir = fs_join(ag->state_dir, "agent");
	char *path = fs_join(dir, "lock");
	int r = fs_mkdir_p(dir, 0700, e);

	if (r == 0) {
		ag->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (ag->lock_fd < 0)
			r = err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
		else if (flock(ag->lock_fd, LOCK_EX | LOCK_NB) < 0)
			r = err_set(
			    e, CAIRN_ECHECK,
			    "another agent is already running for %s (it holds %s and answers "
			    "on %s); stop it first, or use 'cairn agent status'",
			    ag->state_dir, path, ag->sock_path);
		else {
			char pid[32];
			int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
			if (ftruncate(ag->lock_fd, 0) == 0)
				fs_write_all(ag->lock_fd, pid, (size_t)n);
		}
	}
	free(dir);
	free(path);
	return r;
}

static int open_socket(struct agent *ag, int *out_fd, struct err *e)
{
	int fd;
	struct err ce;
	/* we hold the lock, so whoever answers here is not an agent of this state dir —
	 * still, never steal a live socket */
	if (net_unix_connect(ag->sock_path, &fd, &ce) == 0) {
		close(fd);
		return err_set(e, CAIRN_ECHECK, "something already answers on %s; stop it first",
			       ag->sock_path);
	}
	if (unlink(ag->sock_path) == 0)
		log_info("agent", "replaced the stale socket %s", ag->sock_path);
	return net_unix_listen(ag->sock_path, 0600, 128, out_fd, e);
}

/* The API listener the keeper kept from the last agent (its socket file still there), so
 * clients that connected meanwhile are answered; else a new one. */
static int open_or_inherit_socket(struct agent *ag, int *out_fd, struct err *e)
{
	int fd = agent__keeper_take_api(ag);
	if (fd >= 0 && fs_exists(ag->sock_path)) {
		log_info("agent", "serving the API socket the last agent listened on");
		*out_fd = fd;
		return 0;
	}
	if (fd >= 0)
		close(fd);
	return open_socket(ag, out_fd, e);
}

static void remove_prefixed(const char *state_dir, const char *sub, const char *prefix)
{
	char *dir = fs_join(state_dir, sub);
	DIR *d = opendir(dir);
	struct dirent *de;
	if (d) {
		while ((de = readdir(d)))
			if (str_starts(de->d_name, prefix)) {
				char *p = fs_join(dir, de->d_name);
				fs_rm_rf(p);
				free(p);
			}
		closedir(d);
	}
	free(dir);
}

/* What an earlier agent left half-done when it was killed: temp dirs of activations, and
 * objects received in parts (only this agent writes those; a sender starts them over). */
static void clean_stale_activations(const char *state_dir)
{
	remove_prefixed(state_dir, "releases", ".tmp-");
	remove_prefixed(state_dir, "tmp", "part-");
}

static void agent_done(struct agent *ag)
{
	/* parked requests are answered before evhttp frees their connections */
	work_pool_free(ag->pool);
	agent_api_shutdown(ag);
	ev_rest_forget(&ag->api_rest); /* evhttp_free closes the listener */
	if (ag->http)
		evhttp_free(ag->http);
	while (ag->inst) {
		struct instance *in = ag->inst;
		ag->inst = in->next;
		instance_free(in);
	}
	agent__logws_free(ag);
	agent_proxies_free(ag);
	if (ag->base)
		event_base_free(ag->base);
	objstore_free(ag->os);
	if (ag->lock_fd >= 0)
		close(ag->lock_fd);
	free(ag->state_dir);
	free(ag->sock_path);
	free(ag->table_path);
	free(ag->self_exe);
}

int agent_run(const struct agent_opts *o, struct err *e)
{
	struct agent ag = {.lock_fd = -1};
	struct event *sigs[2] = {NULL, NULL};
	int fd = -1, r;

	ag.state_dir = xstrdup(o->state_dir);
	ag.sock_path = fs_join(o->state_dir, AGENT_SOCKET_NAME);
	ag.table_path = xasprintf("%s/agent/instances.json", o->state_dir);
	ag.self_exe = fs_realpath("/proc/self/exe", e);
	ag.started_at = time_now_ns() / 1000000000;
	agent__keeper_init(&ag, o->keep);
	if (!ag.self_exe) {
		r = -EIO;
		goto done;
	}
	if ((r = fs_mkdir_p(o->state_dir, 0700, e)) < 0 || (r = take_lock(&ag, e)) < 0 ||
	    (r = objstore_open(o->state_dir, &ag.os, e)) < 0 ||
	    (r = open_or_inherit_socket(&ag, &fd, e)) < 0)
		goto done;
	clean_stale_activations(o->state_dir);
	/* as many descriptors as the box allows; the proxies' clients get all but
	 * AGENT_FD_RESERVE of them (half when there are fewer than twice that) */
	long nofile = proc_raise_nofile();
	if (nofile <= 0)
		nofile = 1024;
	proxy_fd_budget_set(nofile >= 2 * AGENT_FD_RESERVE ? nofile - AGENT_FD_RESERVE : nofile / 2);
	objstore_tmp_clean_logged(ag.os, "agent");
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	ag.base = event_base_new();
	ag.http = ag.base ? evhttp_new(ag.base) : NULL;
	if (!ag.http) {
		r = err_set(e, ENOMEM, "cannot create the event loop");
		goto done;
	}
	if ((r = work_pool_new(ag.base, WORKERS, WORK_QUEUE, &ag.pool, e)) < 0)
		goto done;
	evhttp_set_max_headers_size(ag.http, MAX_HEADERS_BYTES);
	evhttp_set_max_body_size(ag.http, AGENT_OBJECT_MAX); /* JSON bodies: 1 MiB (parse.c) */
	evhttp_set_timeout(ag.http, IO_TIMEOUT_S);
	evhttp_set_allowed_methods(ag.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_PUT);
	evhttp_set_gencb(ag.http, on_request, &ag);
	struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(ag.http, fd);
	if (!bound) {
		r = err_set(e, EIO, "cannot serve on %s", ag.sock_path);
		close(fd);
		unlink(ag.sock_path);
		fd = -1;
		goto done;
	}
	if (ev_rest_watch(&ag.api_rest, ag.base, evhttp_bound_socket_get_listener(bound), "agent",
			  "API", NULL, NULL) < 0)
		log_warn("agent", "out of memory: the API listener will not rest after a failed accept");
	sigs[0] = evsignal_new(ag.base, SIGTERM, on_signal, &ag);
	sigs[1] = evsignal_new(ag.base, SIGINT, on_signal, &ag);
	event_add(sigs[0], NULL);
	event_add(sigs[1], NULL);
	if ((r = agent_load_and_adopt(&ag, e)) < 0 || (r = agent_proxies_load(&ag, e)) < 0)
		goto done;
	agent__keeper_hold(&ag, fd);
	agent__keeper_ready(&ag);
	log_info("agent", "listening on %s (pid %d)", ag.sock_path, (int)getpid());
	if (o->on_ready)
		o->on_ready(o->ctx, ag.sock_path, agent_count(&ag, NULL));
	if (o->ready_fd >= 0) {
		ssize_t n = write(o->ready_fd, "1", 1);
		(void)n;
		close(o->ready_fd);
	}
	event_base_dispatch(ag.base);
	agent_save(&ag);
	r = 0;
done:
	if (fd >= 0) /* we made the socket file: it goes with us */
		unlink(ag.sock_path);
	/* events go before their base */
	for (int i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	agent__keeper_done(&ag); /* first: closing proxies on the way out drops nothing kept */
	agent_done(&ag);
	curl_global_cleanup();
	return r;
}
