/* controller-internal: what the controller's files share — the server (loop thread state),
 * tasks for the store worker, job runners and the executor interface. Threads: the loop
 * (evhttp, SSE, reads), one store worker (API writes), one runner per app with a job, and the
 * keeper (lease renewal, deadlines, key purge). Each thread has its own store connection. */
#ifndef CAIRN_CONTROLLER_INTERNAL_H
#define CAIRN_CONTROLLER_INTERNAL_H

#include "controller/controller.h"

#include "base/evrest.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

struct event_base;
struct event;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct bufferevent;
struct evconnlistener;
struct evhttp_connection;
struct config;

/* ---- timeouts (docs/timeouts.md is the table; keep both in step) ---------------------------- */
#define CTL_LEASE_TTL_MS 15000          /* a lease not renewed for this long is free */
#define CTL_LEASE_RENEW_MS 3000         /* keeper renews every lease this often (TTL > 3 × this) */
#define CTL_JOB_DEADLINE_MS (30 * 60 * 1000) /* a running job's wall-clock bound */
#define CTL_STEP_GRACE_MS 30000         /* past the deadline, a wedged step gets this long */
#define CTL_STORE_RETRY_MS 10000        /* a step's record refused (disk full): tried this long (< lease TTL - renew) */
#define CTL_STORE_RETRY_MIN_MS 100      /* ... with a backoff from this */
#define CTL_STORE_RETRY_MAX_MS 3000     /* ... to this */
#define CTL_API_TIMEOUT_S 30            /* evhttp read/write timeout per connection */
#define CTL_AGENT_CALL_MS 20000         /* one agent request */
#define CTL_DRAIN_MS 30000             /* requests in flight to instances about to stop */
#define CTL_AGENT_START_MS 10000        /* `cairn agent --daemon` must be listening by then */
#define CTL_SHUTDOWN_DRAIN_MS 2000    /* on SIGTERM: answers and stream ends get this long */
#define CTL_STATUS_HOST_MS 1500       /* status: one host's answer, its SSH connection included */
#define CTL_STATUS_PARALLEL 16        /* status: hosts asked at once */
#define CTL_SSH_CONNECT_S 5             /* ssh ConnectTimeout; the master's forward waits 2 s more */
#define CTL_SSH_ALIVE_S 5               /* ServerAliveInterval: 3 missed → ssh exits, relinked */
#define CTL_IDEM_TTL_MS (24LL * 3600 * 1000) /* published: keys kept 24 h */
#define CTL_IDEM_PURGE_AFTER_MS (72LL * 3600 * 1000) /* purged after 72 h (margin over 24 h) */
#define CTL_EVENTS_KEEP_MS (30LL * 24 * 3600 * 1000) /* the event log keeps 30 days */
#define CTL_PORTS_APPS_MAX 1024        /* apps whose ports a deploy is checked against */
#define CTL_STOP_SETTLE_MS 10000        /* emergency stop: the running job's step returns */
#define CTL_QUEUE_MAX 8                 /* queued deploys per app; beyond: 409 queue_full */
#define CTL_SSE_MAX 256                 /* concurrent event streams */
#define CTL_CONN_MAX 1024               /* open client connections; beyond: 503 busy */
#define CTL_HEAD_TIMEOUT_S 10           /* a whole request head, from accept or its first byte */
/* ---- limits on what TCP clients hold (conns.c; docs/controller.md "Limits") ---------------- */
#define CTL_TCP_CONN_MAX 768            /* TCP connections: the unix socket keeps the rest */
#define CTL_FD_RESERVE 128              /* descriptors TCP clients never get (unix socket, db…) */
#define CTL_HEADS_MAX 128               /* connections still sending a head; beyond: TCP waits */
#define CTL_UNAUTH_BODY_MAX (64 * 1024) /* body read from a TCP head without the token */

/* ---- executor: what a step does on a host ------------------------------------------------------ */

struct exec_job {
	int64_t id;
	const char *app, *release, *from_release;
	const struct config *cfg; /* the release's own cairn.yml */
	const char *state_dir;
	struct store *st;   /* the runner's connection (switch records upstreams) */
	atomic_bool *abort; /* set by the keeper (deadline) or stop: long steps poll it */
};

struct executor;
struct executor_ops {
	const char *name;
	/* Runs one step on one host; detail (JSON object text) says what happened. */
	int (*step)(struct executor *x, const struct exec_job *j, const char *host, enum deploy_step s,
		    struct buf *detail, struct err *e);
	/* Undoes a host's part of the job: new instances stopped, the old upstreams recorded. */
	int (*rollback)(struct executor *x, const struct exec_job *j, const char *host,
			struct buf *detail, struct err *e);
	/* After a crash interrupted step s: 1 it took effect, 0 it did not, <0 cannot tell. */
	int (*reconcile)(struct executor *x, const struct exec_job *j, const char *host,
			 enum deploy_step s, struct err *e);
	/* The app's instances on the host as the agent reports them (a new JSON array), within
	 * bound_ms, the SSH connection included (for status: never waits on a host that is down). */
	int (*instances)(struct executor *x, const char *app, const char *host, int64_t bound_ms,
			 json_t **out, struct err *e);
	/* Adds what a failed step leaves behind on the host (the new instances' last log lines)
	 * to its detail object. May be NULL. */
	void (*evidence)(struct executor *x, const struct exec_job *j, const char *host,
			 json_t *detail);
	/* The app's proxy on the host (listen, mode, stopped, upstreams, per-release traffic), or
	 * *out = NULL when it has none, within bound_ms. May be NULL (executors without proxies). */
	int (*proxy)(struct executor *x, const char *app, const char *host, int64_t bound_ms,
		     json_t **out, struct err *e);
	/* Emergency stop of every instance of the app on the host. */
	int (*stop)(struct executor *x, const char *app, const char *host, struct buf *detail,
		    struct err *e);
	/* `cairn rm`: the app's proxy on the host is removed, then its instances are stopped
	 * gracefully (stop signal, stop timeout). Nothing of it runs there afterwards. */
	int (*remove)(struct executor *x, const char *app, const char *host, struct buf *detail,
		      struct err *e);
	void (*free)(struct executor *x);
};
struct executor {
	const struct executor_ops *ops;
};

/* self_exe: this binary, to start the local agent again when it does not answer (NULL: never,
 * --no-agent). */
struct executor *exec_agent_new(const char *state_dir, const char *self_exe);
/* exec-agent.c, for exec-traffic.c: one agent call; the app's instances of `release` (or, with
 * `other`, of any other release) that are not stopped or failed. */
int exec__agent_call(struct executor *x, const char *host, const char *method, const char *path,
		     json_t *body, int64_t timeout_ms, json_t **out, struct err *e);
int exec__instances(struct executor *x, const struct exec_job *j, const char *host,
		    const char *release, bool other, json_t **out, struct err *e);
struct config_check;
/* One acceptance check against instance iid, sent by the host's agent: *out its answer
 * ({"ok", "status", "latency_ms", "error", "body"}); < 0 when the agent could not be asked. */
int exec__check(struct executor *x, const struct exec_job *j, const char *host, const char *iid,
		const struct config_check *c, json_t **out, struct err *e);
/* exec-traffic.c: the host's proxy of the app pointed at the running instances of `release`
 * ("" empties an existing proxy; none is created) — *out_proxy the agent's answer or NULL. */
int traffic_point(struct executor *x, const struct exec_job *j, const char *host,
		  const char *release, json_t **out_proxy, struct err *e);
int traffic_bake(struct executor *x, const struct exec_job *j, const char *host,
		 struct buf *detail, struct err *e);
/* Waits until the proxy has nothing in flight to `release` (with `other`: to any other
 * release), at most timeout_ms (then logs and returns 0: the stop goes ahead). */
int traffic_drain(struct executor *x, const struct exec_job *j, const char *host,
		  const char *release, bool other, int64_t timeout_ms, struct err *e);
void traffic_evidence(struct executor *x, const struct exec_job *j, const char *host,
		      json_t *detail);
#ifdef CAIRN_TEST_HOOKS
/* CAIRN_TEST_EXECUTOR=log: records each step in CAIRN_TEST_EXEC_LOG (tests only). */
struct executor *exec_log_new(void);
#endif

/* ---- runners ------------------------------------------------------------------------------------ */

struct server;

struct runner {
	struct server *srv;
	char app[STORE_APP_MAX];
	pthread_t th;
	atomic_llong job_id;
	atomic_llong deadline_at;
	atomic_bool abort;      /* deadline passed, stop or shutdown: long steps return early */
	atomic_bool shutdown;   /* the controller stops: leave the job as it is, for the restart */
	atomic_bool cancel;     /* stop: end the job as cancelled */
	atomic_bool has_lease;  /* the runner took the app's lease */
	atomic_bool lease_lost; /* someone broke our lease: touch nothing more */
	atomic_bool done;       /* the thread has ended; the loop joins it */
	char step[64];          /* "host/step" being run, for messages (under srv->rmu) */
	struct runner *next;
};

struct step_metric {
	double sum_s;
	uint64_t count;
};

struct task;
typedef void (*task_fn)(struct task *t);

/* A unit of blocking work for the store worker; done() runs on the loop thread. */
struct task {
	struct server *srv;
	task_fn work, done;
	struct evhttp_request *req; /* NULL once the client went away */
	char key[STORE_IDEM_KEY_MAX + 1]; /* idempotency key held in flight, "" none */
	char app[STORE_APP_MAX];
	struct api_deploy_body body;
	char by[STORE_OWNER_MAX]; /* stop: who asked, as the client says */
	enum api_route route;
	int status;   /* answer: HTTP status */
	json_t *answer; /* answer body (owned) */
	struct err err;
	struct task *next;
};

struct inflight {
	char app[STORE_APP_MAX];
	char key[STORE_IDEM_KEY_MAX + 1];
	struct inflight *next;
};

struct sse_sub;

/* One open client connection (loop thread, conns.c): counted from accept until it closes;
 * what is waiting on it is told when it goes away. */
struct conn_rec {
	struct server *srv;
	struct evhttp_connection *conn; /* borrowed; NULL until the fix-up after accept */
	struct bufferevent *bev; /* a reference held from accept to the fix-up, else NULL */
	struct task *task;   /* a request of it waiting for the worker, or NULL */
	struct sse_sub *sub; /* its event stream, or NULL */
	bool busy;           /* a request of it is read and its answer not yet all written */
	bool tcp;            /* came through the TCP listener */
	bool over;           /* accepted past CTL_CONN_MAX: its request is answered 503 */
	/* the current request head, followed as it arrives */
	bool in_head;        /* a head is being received: counted in n_heads, deadline armed */
	bool scanning;       /* its bytes go through hs (until the head ends) */
	struct api_head_scan hs;
	struct event *head_ev; /* owned: the head's deadline */
	struct conn_rec *next;
};

/* A listener the controller watches (conns.c): rests after accept errors, and (TCP) is
 * enabled only while the limits allow. */
struct ctl_listener {
	struct ev_rest rest;
	bool on; /* accepting */
};

struct metric_req {
	enum api_route route;
	int status;
	uint64_t count;
	struct metric_req *next;
};

struct server {
	struct controller_opts o;
	struct event_base *base;
	struct evhttp *http;
	struct store *rd; /* loop thread's connection (reads) */
	struct store *wr; /* the store worker's connection */
	struct executor *exec;
	char owner[STORE_OWNER_MAX]; /* lease owner id of this process */
	char *token;                 /* owned; bearer token for TCP, or NULL */
	int lock_fd;

	pthread_mutex_t mu; /* worker queues */
	pthread_cond_t cv;
	struct task *todo, *todo_tail, *finished;
	bool stopping;
	pthread_t worker, keeper;
	struct event *done_ev, *notify_ev, *sigterm_ev, *sigint_ev;

	pthread_mutex_t rmu; /* runners list and step metrics */
	pthread_cond_t rcv;  /* wakes runners waiting for a lease, and the keeper */
	struct runner *runners;
	struct step_metric steps[STEP_COUNT + 1]; /* + rollback */

	struct inflight *inflight;   /* loop thread only */
	struct sse_sub *subs;        /* loop thread only */
	int n_subs;
	int64_t last_event;          /* highest event id broadcast */
	struct metric_req *metrics;  /* loop thread only */
	struct event *ping_ev;       /* SSE keep-alive timer (loop thread) */
	struct conn_rec *conns;      /* open connections (loop thread), owned */
	int n_conns;
	int n_tcp, n_fresh, n_heads; /* TCP ones, ones not yet fixed up, ones sending a head */
	int tcp_max;                 /* TCP connections admitted: CTL_TCP_CONN_MAX or fewer */
	long fd_limit;               /* RLIMIT_NOFILE in force */
	uint64_t head_timeouts, tcp_pauses; /* for /metrics */
	struct event *fresh_ev;      /* connections accepted this turn get their fix-up */
	struct ctl_listener lst[2];  /* unix, TCP */

	/* shutdown (loop thread): listeners closed, streams ended, waiting for the connections */
	struct evhttp_bound_socket *bound[2]; /* the unix and TCP listeners, borrowed from http */
	bool draining;
	int64_t signal_ns;       /* when the first signal came (CLOCK_MONOTONIC) */
	struct event *drain_ev;  /* the drain's deadline */
};

/* server.c */
void server_notify(struct server *srv); /* any thread: "new events / a runner ended" */
void server_reply_json(struct evhttp_request *req, int status, json_t *body); /* takes body */
void server_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));
int server_status_for(const struct err *e);
const char *server_code_for(const struct err *e);
/* Queues a task for the worker (loop thread). */
void server_submit(struct server *srv, struct task *t);
int server_open_store(const struct server *srv, struct store **out, struct err *e);
/* From a connection's close callback: on EOF or a timeout evhttp lets go of a request whose
 * answer is not finished (a stream, one waiting for the worker) — its connection becomes NULL —
 * and leaves it to us to free; this frees it then (a request still attached goes with its
 * connection). */
void server__drop_request(struct evhttp_request *req);
/* The record of a request's connection (NULL if none). */
struct conn_rec *server_conn(struct server *srv, struct evhttp_request *req);
void server__on_conn_close(struct evhttp_connection *c, void *arg); /* arg: its conn_rec */

/* conns.c: connection records, admission, head deadlines and body limits */
int server__conns_init(struct server *srv);
void server__conns_done(struct server *srv); /* after evhttp_free */
struct bufferevent *server__bevcb(struct event_base *base, void *arg); /* arg: the server */
/* Watches listener i (0 unix, 1 TCP): admission (TCP) and rests after accept errors. */
int server__listener_watch(struct server *srv, int i, struct evconnlistener *l, const char *name);
void server__listener_forget(struct server *srv, int i); /* it is being closed */
void server__conn_free(struct conn_rec *r);
/* A request of r has been answered: the next head is followed from the buffered bytes. */
void server__conn_next(struct conn_rec *r);
/* The request line ended the head for the server's purposes (its handler runs). */
void server__conn_head_read(struct conn_rec *r);

/* api.c: POST deploys / rollback (loop thread) */
void api__submit(struct server *srv, struct evhttp_request *req, const struct api_path *p);
/* POST /v1/apps/{app}/stop, body {"reason", "by"} (stop.c; worker thread) */
void api__stop(struct server *srv, struct evhttp_request *req, const struct api_path *p);
void api__stop_work(struct task *t);
/* a task's done(): its answer, or its error (api-read.c) */
void api__task_done_reply(struct task *t);
/* api-read.c: route dispatch and the other handlers (loop thread) */
void api_handle(struct server *srv, struct evhttp_request *req, const struct api_path *p);
json_t *api_job_json(struct store *st, const struct store_job *j, bool with_steps);

/* api-objects.c: object upload by digest and release registration (loop thread) */
void api_objects_handle(struct server *srv, struct evhttp_request *req, const struct api_path *p);
/* The body limit of the route a request line (its first n bytes) names. */
int64_t api_objects_body_limit(const char *line, size_t n);

/* events.c: server-sent events */
void events_subscribe(struct server *srv, struct evhttp_request *req);
void events_broadcast(struct server *srv);
void events__gone(struct server *srv, struct sse_sub *s); /* its connection closed */
/* On shutdown: ends every stream (its last chunk, then its connection closes, which the
 * drain waits for) and stops the keep-alive timer; returns how many streams it ended. */
int events_end_all(struct server *srv);

/* runner.c */
/* Starts a runner for every app with a queued or running job and none yet (loop thread). */
void runners_schedule(struct server *srv, const char *app_or_null);
/* Joins runners that ended and schedules again for their apps (loop thread). */
void runners_reap(struct server *srv);
void runners_stop_all(struct server *srv); /* on shutdown: abort, join */
int keeper_start(struct server *srv);
/* stop route helper (worker thread): abort the app's runner, mark it for cancel. Returns
 * whether one was running. */
bool runners_cancel_app(struct server *srv, const char *app);
/* Waits up to ms for the app's runner to end; true when none is left. */
bool runners_wait_app(struct server *srv, const char *app, int64_t ms);
bool runner__stopping(struct runner *rn);
void *runner__main(void *arg); /* the runner thread (runner.c) */
bool runner__wait(struct runner *rn, int64_t ms);

/* hosts.c: the transport to each host's agent (docs/hosts.md). One registry per process. */
int hosts_init(const char *state_dir, struct err *e); /* <state>/hosts, the ssh spawner thread */
void hosts_shutdown(void);                            /* stops every ssh master; no orphans */
/* Registers the plan's ssh hosts (a changed address or state dir restarts that link). */
void hosts_learn(const struct config *cfg);
/* <state>/hosts/<name>.sock, the link up (ssh started or restarted, the agent started there). */
int hosts_socket(const char *host, char **out_path, struct err *e);
/* One agent call to an ssh host (JSON body, taken; or raw bytes for a PUT); a lost link is
 * repaired and the call made again when repeating it is safe. */
int hosts_call(const char *host, const char *method, const char *path, json_t *body,
	       const void *raw, size_t raw_n, int64_t timeout_ms, json_t **out, struct err *e);
/* May an agent request run again when its answer was lost? (Not a start of instances, not a
 * DELETE: the step fails and the job's own rules take over.) */
bool hosts_repeatable(const char *method, const char *path);
/* The local agent: `SELF agent --daemon --if-absent --state DIR` — nothing when one answers,
 * a wait while its keeper restarts it, else a new keeper and agent. */
int hosts_local_start(const char *self_exe, const char *state_dir, struct err *e);
/* One GET to an ssh host's agent within bound_ms, everything included (the link's lock, a
 * connect, the call); no repair. A master still connecting at the bound is left to go on. */
int hosts_query(const char *host, const char *path, int64_t bound_ms, json_t **out,
		struct err *e);
/* push.c: STEP_ENSURE_OBJECTS on an ssh host — the release's manifest and objects the host
 * lacks are sent, then the host's agent re-hashes the release. */
int hosts_push_release(const struct exec_job *j, const char *host, struct buf *detail,
		       struct err *e);

/* The release's own cairn.yml (runner.c): the plan of a deploy (hosts, checks, timeouts). */
int plan_load(const char *state_dir, const char *release, struct config **out, struct err *e);

/* ports.c: [{"app","release","host","listen_host","listen_port"}] of every app's current
 * release; ports_check_release: controller_ports_clash for a stored release. */
json_t *ports_of_apps(struct server *srv, struct store *st, struct err *e);
int ports_check_release(struct server *srv, struct store *st, const char *app,
			const char *release, struct err *e);

/* test hooks (runner.c; no-ops without CAIRN_TEST_HOOKS) */
void test_hook_after_step(const char *step, const char *host);
void test_hook_delay(const char *env_name);

#endif
