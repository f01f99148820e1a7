/* controller/server: `cairn serve`'s process — the event loop, listeners (unix socket 0600,
 * optional TCP with a bearer token compared in constant time), limits, routing, JSON replies,
 * the store worker thread and clean shutdown (listeners closed, streams ended, answers drained
 * within CTL_SHUTDOWN_DRAIN_MS). Handlers live in api.c; nothing here blocks on a deploy:
 * writes go to the worker, deploys to runner threads. */
#include "controller/controller-internal.h"
#include "release/release.h"

#include "base/httpc.h"
#include "controller/faults.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int server_open_store(const struct server *srv, struct store **out, struct err *e)
{
	return store_open_sqlite(srv->o.state_dir, out, e);
}

void server_notify(struct server *srv)
{
	event_active(srv->notify_ev, EV_READ, 0);
}

void server_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *b = evbuffer_new();
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (txt) {
		evbuffer_add(b, txt, strlen(txt));
		evbuffer_add(b, "\n", 1);
	}
	free(txt);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, status, NULL, b);
	evbuffer_free(b);
}

void server_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
			...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	server_reply_json(req, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

int server_status_for(const struct err *e)
{
	switch (e->code) {
	case CAIRN_EINPUT:
	case EINVAL:
		return 400;
	case CAIRN_ENOTFOUND:
	case ENOENT:
		return 404;
	case CAIRN_EAMBIGUOUS:
		return 422;
	case E2BIG:
		return 413;
	case EAGAIN:
		return 409;
	default:
		return 500;
	}
}

const char *server_code_for(const struct err *e)
{
	switch (e->code) {
	case CAIRN_EINPUT:
	case EINVAL:
	case CAIRN_EAMBIGUOUS:
		return "input";
	case CAIRN_ENOTFOUND:
	case ENOENT:
		return "not_found";
	case E2BIG:
		return "too_large";
	case EAGAIN:
		return "conflict";
	default:
		return "internal";
	}
}

/* ---- the store worker --------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct server *srv = arg;
	for (;;) {
		if (!srv->wr) {
			struct err e;
			if (server_open_store(srv, &srv->wr, &e) < 0) {
				log_error("controller", "store worker: %s", e.msg);
				srv->wr = NULL;
			}
		}
		pthread_mutex_lock(&srv->mu);
		while (!srv->todo && !srv->stopping)
			pthread_cond_wait(&srv->cv, &srv->mu);
		struct task *t = srv->todo;
		if (!t) {
			pthread_mutex_unlock(&srv->mu);
			store_close(srv->wr);
			srv->wr = NULL;
			return NULL;
		}
		srv->todo = t->next;
		if (!srv->todo)
			srv->todo_tail = NULL;
		pthread_mutex_unlock(&srv->mu);
		t->next = NULL;
		t->work(t);
		pthread_mutex_lock(&srv->mu);
		t->next = srv->finished;
		srv->finished = t;
		pthread_mutex_unlock(&srv->mu);
		event_active(srv->done_ev, EV_READ, 0);
	}
}

/* ---- shutdown ---------------------------------------------------------------------------------
 * The first SIGTERM/SIGINT closes the listeners (and removes the socket file), ends every event
 * stream with its last chunk and "Connection: close", and answers any request still read on an
 * open connection 503 shutting_down. The loop runs on until no connection is busy (a request
 * read, its answer not all written: a stream's end, a worker's answer), at most
 * CTL_SHUTDOWN_DRAIN_MS; then controller_serve stops the runners and threads and evhttp_free
 * closes what is left (idle keep-alives, uploads still arriving). A second signal stops at once. */

static void drain_check(struct server *srv)
{
	if (!srv->draining)
		return;
	for (struct conn_rec *r = srv->conns; r; r = r->next)
		if (r->busy || r->task)
			return;
	event_base_loopexit(srv->base, NULL);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	int n = 0;
	(void)fd, (void)what;
	for (struct conn_rec *r = srv->conns; r; r = r->next)
		n += r->busy || r->task;
	log_warn("controller", "shutdown: %d connection(s) still busy after %d ms; closing them", n,
		 CTL_SHUTDOWN_DRAIN_MS);
	event_base_loopbreak(srv->base);
}

static void start_drain(struct server *srv)
{
	struct timeval tv = { CTL_SHUTDOWN_DRAIN_MS / 1000, (CTL_SHUTDOWN_DRAIN_MS % 1000) * 1000 };
	char *sock = fs_join(srv->o.state_dir, "cairn.sock");
	int busy = 0;

	srv->draining = true;
	for (size_t i = 0; i < ARRAY_SIZE(srv->bound); i++)
		if (srv->bound[i]) {
			server__listener_forget(srv, (int)i);
			evhttp_del_accept_socket(srv->http, srv->bound[i]);
			srv->bound[i] = NULL;
		}
	unlink(sock); /* we hold controller.lock: it is ours */
	free(sock);
	int streams = events_end_all(srv);
	for (struct conn_rec *r = srv->conns; r; r = r->next)
		busy += r->busy || r->task;
	log_info("controller", "shutdown: listeners closed, %d event stream(s) ended, %d "
			       "connection(s) to finish (at most %d ms)",
		 streams, busy, CTL_SHUTDOWN_DRAIN_MS);
	srv->drain_ev = evtimer_new(srv->base, on_drain_deadline, srv);
	if (!srv->drain_ev || event_add(srv->drain_ev, &tv) < 0) {
		event_base_loopbreak(srv->base);
		return;
	}
	drain_check(srv);
}

/* ---- connections ----------------------------------------------------------------------------
 * Records are made when evhttp accepts a connection (conns.c: admission, head deadlines, body
 * limits). Past CTL_CONN_MAX, a new connection's request is answered 503 and it is closed. */

void server__drop_request(struct evhttp_request *req)
{
	if (req && !evhttp_request_get_connection(req))
		evhttp_request_free(req);
}

void server__on_conn_close(struct evhttp_connection *c, void *arg)
{
	struct conn_rec *rec = arg;
	struct server *srv = rec->srv;
	(void)c;
	if (rec->task) {
		server__drop_request(rec->task->req);
		rec->task->req = NULL;
	}
	if (rec->sub)
		events__gone(srv, rec->sub);
	server__conn_free(rec);
	drain_check(srv);
}

struct conn_rec *server_conn(struct server *srv, struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	for (struct conn_rec *r = srv->conns; r && c; r = r->next)
		if (r->conn == c)
			return r;
	return NULL;
}

static bool admit(struct conn_rec *rec, struct evhttp_request *req)
{
	if (!rec || !rec->over)
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	return false;
}

void server_submit(struct server *srv, struct task *t)
{
	t->srv = srv;
	struct conn_rec *rec = t->req ? server_conn(srv, t->req) : NULL;
	if (rec)
		rec->task = t;
	pthread_mutex_lock(&srv->mu);
	if (srv->todo_tail)
		srv->todo_tail->next = t;
	else
		srv->todo = t;
	srv->todo_tail = t;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

static void on_tasks_done(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	pthread_mutex_lock(&srv->mu);
	struct task *t = srv->finished;
	srv->finished = NULL;
	pthread_mutex_unlock(&srv->mu);
	while (t) {
		struct task *next = t->next;
		struct conn_rec *rec = t->req ? server_conn(srv, t->req) : NULL;
		if (rec)
			rec->task = NULL;
		t->done(t);
		json_decref(t->answer);
		free(t);
		t = next;
	}
	events_broadcast(srv);
	drain_check(srv);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	events_broadcast(srv);
	runners_reap(srv);
}

/* ---- requests ---------------------------------------------------------------------------------- */

static void count_request(struct server *srv, enum api_route route, int status)
{
	struct metric_req *m;
	for (m = srv->metrics; m; m = m->next)
		if (m->route == route && m->status == status) {
			m->count++;
			return;
		}
	if (!(m = calloc(1, sizeof(*m))))
		return;
	m->route = route;
	m->status = status;
	m->count = 1;
	m->next = srv->metrics;
	srv->metrics = m;
}

static void on_request_complete(struct evhttp_request *req, void *arg)
{
	struct server *srv = arg;
	struct conn_rec *rec = server_conn(srv, req);
	struct api_path p;
	api_match_path(evhttp_request_get_uri(req), &p);
	count_request(srv, p.route, evhttp_request_get_response_code(req));
	if (rec) {
		rec->busy = false;
		server__conn_next(rec);
	}
	drain_check(srv);
}

static bool authorised(struct server *srv, struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	const char *addr = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(c, (char **)&addr, &port);
	/* the unix socket is guarded by its mode (0600): its peers have no port */
	if (!srv->token || port == 0)
		return true;
	return api_token_ok(evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
			    srv->token);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct server *srv = arg;
	struct api_path p;
	const char *uri = evhttp_request_get_uri(req);

	struct conn_rec *rec = server_conn(srv, req);
	evhttp_request_set_on_complete_cb(req, on_request_complete, srv);
	if (rec)
		server__conn_head_read(rec);
	if (srv->draining) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		server_reply_error(req, 503, "shutting_down", "the controller is stopping; retry when "
							      "it is back");
		return;
	}
	if (!admit(rec, req)) {
		server_reply_error(req, 503, "busy", "too many open connections (%d); retry later",
				   CTL_CONN_MAX);
		return;
	}
	if (rec)
		rec->busy = true;
	if (!authorised(srv, req)) {
		/* a client without the token keeps no connection open */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		server_reply_error(req, 401, "unauthorized",
				   "missing or wrong bearer token; pass --token-file with the file "
				   "'cairn serve' wrote");
		return;
	}
	api_match_path(uri, &p);
	if (p.route == ROUTE_NONE) {
		server_reply_error(req, 404, "not_found", "no such endpoint; see docs/controller.md");
		return;
	}
	api_handle(srv, req, &p);
}

/* ---- listeners, token, agent ------------------------------------------------------------------ */

static int listen_unix(struct server *srv, struct err *e)
{
	char *path = fs_join(srv->o.state_dir, "cairn.sock");
	int fd = -1, r;

	unlink(path); /* we hold controller.lock: a socket file here is a dead controller's */
	if ((r = net_unix_listen(path, 0600, 512, &fd, e)) < 0)
		goto out;
	struct evconnlistener *l = evconnlistener_new(srv->base, NULL, NULL,
						     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!l || !(srv->bound[0] = evhttp_bind_listener(srv->http, l)) ||
	    server__listener_watch(srv, 0, l, "unix") < 0) {
		if (!l)
			close(fd);
		r = err_set(e, ENOMEM, "cannot serve on %s", path);
	}
out:
	free(path);
	return r;
}

static int load_token(struct server *srv, struct err *e)
{
	struct buf b;
	int r;
	buf_init(&b, 4096);
	if (!fs_exists(srv->o.token_file)) {
		unsigned char raw[32];
		char hex[65];
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return err_set(e, EIO, "cannot make a random token");
		for (size_t i = 0; i < sizeof(raw); i++)
			snprintf(hex + 2 * i, 3, "%02x", raw[i]);
		hex[64] = '\n';
		if ((r = fs_write_atomic(srv->o.token_file, hex, 65, 0600, e)) < 0)
			return r;
	}
	/* checked and read through one fd: a file swapped in between is never read */
	struct stat sb;
	int fd = open(srv->o.token_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		r = err_set(e, errno, "cannot open token file %s: %s", srv->o.token_file,
			    strerror(errno));
		goto fail;
	}
	if (sb.st_mode & 077) {
		r = err_set(e, CAIRN_EINPUT, "token file %s is readable by others (mode %03o); "
					     "chmod 600 it", srv->o.token_file, sb.st_mode & 0777);
		goto fail;
	}
	/* whoever owns it can change it (and the dir it is in may let anyone replace it) */
	if (sb.st_uid != geteuid()) {
		r = err_set(e, CAIRN_EINPUT,
			    "token file %s belongs to uid %u, not to the user cairn runs as (uid "
			    "%u): chown it, or let cairn make one in a directory only you can write",
			    srv->o.token_file, (unsigned)sb.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if ((r = fs_read_fd(fd, &b)) < 0) {
		r = err_set(e, -r, "cannot read token file %s: %s", srv->o.token_file, strerror(-r));
		goto fail;
	}
	close(fd);
	fd = -1;
	struct slice t = slice_trim((struct slice){ b.data ? b.data : "", b.len });
	if (t.n < 16) {
		buf_done(&b);
		return err_set(e, CAIRN_EINPUT, "token in %s is shorter than 16 characters",
			       srv->o.token_file);
	}
	srv->token = strndup(t.p, t.n);
	buf_done(&b);
	return srv->token ? 0 : err_set(e, ENOMEM, "out of memory");
fail:
	if (fd >= 0)
		close(fd);
	buf_done(&b);
	return r;
}

static int listen_tcp(struct server *srv, struct err *e)
{
	char host[256];
	const char *colon = strrchr(srv->o.listen, ':');
	if (!colon || colon == srv->o.listen || (size_t)(colon - srv->o.listen) >= sizeof(host))
		return err_set(e, CAIRN_EINPUT, "--listen %s: expected HOST:PORT", srv->o.listen);
	memcpy(host, srv->o.listen, (size_t)(colon - srv->o.listen));
	host[colon - srv->o.listen] = '\0';
	int port = atoi(colon + 1);
	if (port <= 0 || port > 65535)
		return err_set(e, CAIRN_EINPUT, "--listen %s: bad port", srv->o.listen);
	if (!(srv->bound[1] = evhttp_bind_socket_with_handle(srv->http, host, (ev_uint16_t)port)))
		return err_set(e, EADDRINUSE, "cannot listen on %s: %s", srv->o.listen, strerror(errno));
	if (server__listener_watch(srv, 1, evhttp_bound_socket_get_listener(srv->bound[1]),
				   "TCP") < 0)
		return err_set(e, ENOMEM, "out of memory");
	return 0;
}

static void start_agent(struct server *srv)
{
	char *sock = fs_join(srv->o.state_dir, "agent.sock");
	struct httpc c = { .unix_path = sock, .base_url = "http://localhost", .timeout_ms = 2000 };
	struct httpc_req rq = { .method = "GET", .path = "/v1/agent" };
	struct httpc_resp resp;
	struct err e;
	buf_init(&resp.body, 64 * 1024);
	if (httpc_do(&c, &rq, &resp, &e) == 0 && resp.status == 200) {
		log_info("controller", "agent answers on %s", sock);
	} else {
		/* `cairn agent --daemon` detaches and returns once the agent listens */
		if (hosts_local_start(srv->o.self_exe, srv->o.state_dir, &e) < 0)
			log_warn("controller", "%s", e.msg);
		else
			log_info("controller", "started the local agent (%s agent --daemon)", srv->o.self_exe);
	}
	buf_done(&resp.body);
	free(sock);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)what;
	if (srv->draining) {
		log_info("controller", "signal %d again: stopping now", (int)sig);
		event_base_loopbreak(srv->base);
		return;
	}
	log_info("controller", "signal %d: shutting down", (int)sig);
	srv->signal_ns = time_mono_ns();
	start_drain(srv);
}

static int take_lock(struct server *srv, struct err *e)
{
	char *path = fs_join(srv->o.state_dir, "controller.lock");
	srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int r = 0;
	if (srv->lock_fd < 0)
		r = err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
	else if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = err_set(e, EBUSY, "another controller serves %s (it holds %s); stop it first",
			    srv->o.state_dir, path);
		/* not ours: the shutdown path removes cairn.sock only while holding the lock */
		close(srv->lock_fd);
		srv->lock_fd = -1;
	}
	free(path);
	return r;
}

static int collect_app(void *ctx, const struct store_job *j)
{
	strv_push(ctx, j->app);
	return 0;
}

/* Leases in this database can only belong to an earlier process of this state directory: we
 * hold controller.lock. Break them, so recovery need not wait for them to expire. */
static int break_stale_leases(struct server *srv, struct err *e)
{
	const struct store_job_ops *J = store_jobs(srv->rd);
	struct strv apps;
	int r;
	strv_init(&apps);
	r = J->list(srv->rd, NULL, 1u << JOB_RUNNING, 0, collect_app, &apps, e);
	for (size_t i = 0; r >= 0 && i < apps.n; i++)
		if ((r = J->lease_release(srv->rd, apps.v[i], NULL, e)) > 0)
			log_info("controller", "broke the lease a stopped controller held on %s", apps.v[i]);
	strv_done(&apps);
	return r < 0 ? r : 0;
}

/* What killed processes left in <state>/tmp (temp objects, build scratch, expired parts). */
static void clean_tmp(const char *state_dir)
{
	struct objstore *os = NULL;
	struct err ce = { 0 };
	if (objstore_open(state_dir, &os, &ce) == 0)
		objstore_tmp_clean_logged(os, "controller");
	objstore_free(os);
}

static struct executor *make_executor(struct server *srv)
{
#ifdef CAIRN_TEST_HOOKS
	const char *x = getenv("CAIRN_TEST_EXECUTOR");
	if (x && !strcmp(x, "log"))
		return exec_log_new();
#endif
	return exec_agent_new(srv->o.state_dir, srv->o.no_agent ? NULL : srv->o.self_exe);
}

static void server_free(struct server *srv)
{
	struct metric_req *m, *mn;
	srv->draining = false; /* the connections evhttp_free closes are not waited for */
	for (int i = 0; i < 2; i++)
		server__listener_forget(srv, i); /* evhttp_free closes them */
	if (srv->http)
		evhttp_free(srv->http); /* closes every connection: their records go with them */
	server__conns_done(srv);
	if (srv->drain_ev)
		event_free(srv->drain_ev);
	if (srv->done_ev)
		event_free(srv->done_ev);
	if (srv->notify_ev)
		event_free(srv->notify_ev);
	if (srv->sigterm_ev)
		event_free(srv->sigterm_ev);
	if (srv->sigint_ev)
		event_free(srv->sigint_ev);
	if (srv->base)
		event_base_free(srv->base);
	for (m = srv->metrics; m; m = mn) {
		mn = m->next;
		free(m);
	}
	while (srv->inflight) {
		struct inflight *n = srv->inflight->next;
		free(srv->inflight);
		srv->inflight = n;
	}
	if (srv->exec)
		srv->exec->ops->free(srv->exec);
	store_close(srv->rd);
	free(srv->token);
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->rmu);
	pthread_cond_destroy(&srv->rcv);
}

int controller_serve(const struct controller_opts *o, struct err *e)
{
	struct server srv;
	struct ctl_faults *faults = NULL;
	bool worker_up = false, keeper_up = false, hosts_up = false;
	unsigned char rnd[6];
	char host[64] = "host";
	int r;

	memset(&srv, 0, sizeof(srv));
	srv.o = *o;
	srv.lock_fd = -1;
	pthread_mutex_init(&srv.mu, NULL);
	pthread_cond_init(&srv.cv, NULL);
	pthread_mutex_init(&srv.rmu, NULL);
	pthread_cond_init(&srv.rcv, NULL);
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	/* as many descriptors as the box allows; TCP clients get all but CTL_FD_RESERVE of them
	 * (half when there are fewer than twice that), and at most CTL_TCP_CONN_MAX */
	srv.fd_limit = proc_raise_nofile();
	if (srv.fd_limit <= 0)
		srv.fd_limit = 1024;
	srv.tcp_max = (int)(srv.fd_limit >= 2 * CTL_FD_RESERVE ? srv.fd_limit - CTL_FD_RESERVE
							     : srv.fd_limit / 2);
	if (srv.tcp_max > CTL_TCP_CONN_MAX)
		srv.tcp_max = CTL_TCP_CONN_MAX;
	if ((r = fs_mkdir_p(o->state_dir, 0700, e)) < 0 || (r = take_lock(&srv, e)) < 0 ||
	    (r = server_open_store(&srv, &srv.rd, e)) < 0)
		goto out;
	gethostname(host, sizeof(host) - 1);
	RAND_bytes(rnd, sizeof(rnd));
	snprintf(srv.owner, sizeof(srv.owner), "%.40s:%d:%02x%02x%02x%02x%02x%02x", host, (int)getpid(),
		 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	if ((r = break_stale_leases(&srv, e)) < 0)
		goto out;
	clean_tmp(o->state_dir);
	if ((r = hosts_init(o->state_dir, e)) < 0)
		goto out;
	hosts_up = true;
	srv.exec = make_executor(&srv);
	srv.base = event_base_new();
	srv.http = srv.base ? evhttp_new(srv.base) : NULL;
	if (!srv.http) {
		r = err_set(e, ENOMEM, "cannot start the event loop");
		goto out;
	}
	evhttp_set_max_body_size(srv.http, API_BODY_MAX); /* per request: conns.c */
	evhttp_set_bevcb(srv.http, server__bevcb, &srv);
	if (server__conns_init(&srv) < 0) {
		r = err_set(e, ENOMEM, "out of memory");
		goto out;
	}
	evhttp_set_max_headers_size(srv.http, API_HEADERS_MAX);
	evhttp_set_timeout(srv.http, CTL_API_TIMEOUT_S);
	evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						     EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
						     EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(srv.http, on_request, &srv);
	if ((r = listen_unix(&srv, e)) < 0)
		goto out;
	if (o->listen && ((r = load_token(&srv, e)) < 0 || (r = listen_tcp(&srv, e)) < 0))
		goto out;
	if ((r = ctl_faults_start(o->faults_config, &faults, e)) < 0)
		goto out;
	srv.done_ev = event_new(srv.base, -1, 0, on_tasks_done, &srv);
	srv.notify_ev = event_new(srv.base, -1, 0, on_notify, &srv);
	srv.sigterm_ev = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
	srv.sigint_ev = evsignal_new(srv.base, SIGINT, on_signal, &srv);
	if (!srv.done_ev || !srv.notify_ev || !srv.sigterm_ev || !srv.sigint_ev) {
		r = err_set(e, ENOMEM, "out of memory");
		goto out;
	}
	event_add(srv.sigterm_ev, NULL);
	event_add(srv.sigint_ev, NULL);
	srv.last_event = -1; /* the first broadcast starts from the newest id */
	if (pthread_create(&srv.worker, NULL, worker_main, &srv) != 0) {
		r = err_set(e, EAGAIN, "cannot start the store worker");
		goto out;
	}
	worker_up = true;
	if ((r = keeper_start(&srv)) < 0) {
		err_set(e, -r, "cannot start the lease keeper");
		goto out;
	}
	keeper_up = true;
	if (!o->no_agent)
		start_agent(&srv);
	events_broadcast(&srv);
	runners_schedule(&srv, NULL);
	log_info("controller", "serving %s/cairn.sock%s%s", o->state_dir, o->listen ? " and " : "",
		 o->listen ? o->listen : "");
	fprintf(stderr, "cairn serve: ready on %s/cairn.sock\n", o->state_dir);
	event_base_dispatch(srv.base);
	r = 0;
out:
	if (srv.base)
		runners_stop_all(&srv);
	events_end_all(&srv); /* none left after a drain; the deadline or an error may leave some */
	pthread_mutex_lock(&srv.mu);
	srv.stopping = true;
	pthread_cond_broadcast(&srv.cv);
	pthread_mutex_unlock(&srv.mu);
	pthread_mutex_lock(&srv.rmu);
	pthread_cond_broadcast(&srv.rcv);
	pthread_mutex_unlock(&srv.rmu);
	if (worker_up)
		pthread_join(srv.worker, NULL);
	if (keeper_up)
		pthread_join(srv.keeper, NULL);
	if (hosts_up)
		hosts_shutdown(); /* after the runners: no step uses a link any more */
	/* answers the worker finished after the loop stopped are dropped with their tasks */
	while (srv.finished) {
		struct task *t = srv.finished;
		struct conn_rec *rec = t->req ? server_conn(&srv, t->req) : NULL;
		if (rec)
			rec->task = NULL;
		srv.finished = t->next;
		json_decref(t->answer);
		free(t);
	}
	if (srv.lock_fd >= 0) {
		char *sock = fs_join(o->state_dir, "cairn.sock");
		unlink(sock);
		free(sock);
	}
	ctl_faults_stop(faults);
	server_free(&srv);
	if (srv.signal_ns)
		log_info("controller", "stopped %.2f s after the signal",
			 (double)(time_mono_ns() - srv.signal_ns) / 1e9);
	return r;
}
