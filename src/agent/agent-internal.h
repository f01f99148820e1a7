/* agent-internal: what the files of src/agent/ share — the supervisor table, the instance and
 * agent structs, the worker pool, request parsing, log files. Never included from outside. */
#ifndef CAIRN_AGENT_INTERNAL_H
#define CAIRN_AGENT_INTERNAL_H

#include "agent/agent.h"

#include "base/evrest.h"

#include <jansson.h>
#include <pthread.h>

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;
struct evhttp_connection;

#define AGENT_MAX_CONNS 256
#define AGENT_BODY_MAX (1024 * 1024)        /* a JSON request body */
/* descriptors the proxies' clients never get: the API, instances, logs, probes, pools */
#define AGENT_FD_RESERVE 512
struct objstore;

/* ---- supervisor table (sup.c): pure, no processes, no clock of its own ------------------- */

enum sup_state {
	SUP_STARTING,
	SUP_RUNNING,
	SUP_BACKOFF,
	SUP_FAILED,
	SUP_STOPPING,
	SUP_STOPPED,
	SUP_N_STATES
};
enum sup_event {
	SUP_EV_START,
	SUP_EV_EXITED,
	SUP_EV_EXEC_FAILED,
	SUP_EV_PROBE_OK,
	SUP_EV_STOP,
	SUP_EV_TIMER,
	SUP_N_EVENTS
};
enum sup_action {
	SUP_ACT_NONE,	 /* ignore the event */
	SUP_ACT_SPAWN,	 /* start the process now */
	SUP_ACT_BACKOFF, /* arm the timer for delay_ms, then TIMER spawns */
	SUP_ACT_GIVE_UP, /* failed: no more restarts */
	SUP_ACT_TERM,	 /* send the stop signal to the group, arm the kill timer (delay_ms) */
	SUP_ACT_KILL,	 /* SIGKILL the group */
	SUP_ACT_DONE,	 /* stopped: disarm timers, answer waiters */
};

#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 10000
#define SUP_MIN_RESPAWN_MS 500	 /* at least this long between two spawns */
#define SUP_RESET_AFTER_MS 10000 /* a run this long resets the backoff */
#define SUP_LOOP_EXITS	   5	 /* this many exits ... */
#define SUP_LOOP_WINDOW_MS 30000 /* ... within this window: failed */

struct sup {
	enum sup_state state;
	int64_t backoff_ms;	       /* next backoff delay */
	int64_t last_spawn_ms;	       /* monotonic ms of the last spawn (or adoption) */
	int64_t exits[SUP_LOOP_EXITS]; /* ring of recent exit times */
	unsigned n_exits;
	int64_t stop_timeout_ms;
	int64_t delay_ms; /* output: timer to arm for BACKOFF / TERM */
};

void sup_init(struct sup *s, int64_t stop_timeout_ms);
/* Applies one event at monotonic time now_ms: updates s->state and returns what to do. */
enum sup_action sup_step(struct sup *s, enum sup_event ev, int64_t now_ms);
const char *sup_state_name(enum sup_state st);
int sup_state_parse(const char *name, enum sup_state *out);
const char *sup_event_name(enum sup_event ev);
const char *sup_action_name(enum sup_action a);

/* ---- requests (parse.c): outside bytes → typed structs; no libevent, fuzzed -------------- */

#define AGENT_MAX_COUNT 64
#define AGENT_MAX_ENV	256
#define AGENT_NAME_MAX	63
#define AGENT_MAX_RESERVED 8

struct start_req {
	char release[HASH_ID_LEN + 1];
	int count;
	json_t *env;		 /* owned: object of string values */
	int64_t stop_timeout_ms; /* -1: the release's */
	int stop_signal;
	int reserved[AGENT_MAX_RESERVED]; /* ports never given to the new instances */
	size_t n_reserved;
};
void start_req_done(struct start_req *r);
int agent_parse_start(const char *body, size_t n, struct start_req *out, struct err *e);
struct probe_req {
	char *http; /* owned; NULL: TCP connect */
	int64_t timeout_ms;
};
int agent_parse_probe(const char *body, size_t n, struct probe_req *out, struct err *e);
int agent_parse_timeout(const char *body, size_t n, int64_t def_ms, int64_t *out_ms, struct err *e);
#define AGENT_PROXY_UPS_MAX 64
#define PROXY_LABEL_MAX 128 /* = PROXY_TOXIC_NAME_MAX */
struct proxy_req {
	char listen[NET_ADDR_STRLEN]; /* "host:port" (port 0: any) */
	bool http;                    /* "mode": "http" (default) or "tcp" */
	bool stopped;                 /* emergency stop: 503 (http) / refused (tcp) */
	json_t *upstreams;            /* owned: [{"addr": "host:port", "release": label}] */
};
void proxy_req_done(struct proxy_req *r);
int agent_parse_proxy(const char *body, size_t n, struct proxy_req *out, struct err *e);
/* POST …/instances/{iid}/check: one acceptance request against the instance, judged here
 * {"method","path","headers":{},"body","timeout_ms","expect":{"status","body_contains",
 * "max_latency_ms"}}. Strings point into doc. */
struct check_req {
	json_t *doc; /* owned */
	const char *method, *path, *body, *expect_body;
	size_t body_n;
	struct strv headers; /* "Name: value" */
	int64_t timeout_ms, expect_max_latency_ms;
	int expect_status;
};
void check_req_done(struct check_req *r);
int agent_parse_check(const char *body, size_t n, struct check_req *out, struct err *e);
bool agent_name_ok(const char *s);
int agent_signal_parse(const char *name);
const char *agent_signal_name(int sig);

/* ---- worker pool (work.c): blocking jobs off the loop; results come back on the loop ----- */

struct work {
	void (*run)(struct work *w);  /* on a worker thread: no loop state */
	void (*done)(struct work *w); /* on the loop thread, afterwards; frees w */
	struct work *next;
	bool cancelled; /* never ran: the pool shut down first (done() still runs) */
};
struct work_pool;
int work_pool_new(struct event_base *base, unsigned threads, unsigned max_queue,
		  struct work_pool **out, struct err *e);
/* -EBUSY when the queue is full; on success done() will be called exactly once. */
int work_submit(struct work_pool *p, struct work *w);
/* Waits for running jobs; queued ones are cancelled; every done() runs before it returns. */
void work_pool_free(struct work_pool *p);

/* ---- instances --------------------------------------------------------------------------- */

#define INSTANCE_ID_MAX 24
#define LAST_EXIT_MAX	256

struct waiter { /* a request parked until its instance stops */
	struct evhttp_request *req;
	struct waiter *next;
};

/* Who an app runs as (appuser.c). drop: the agent is root and switches to uid:gid; else the
 * app runs as the agent itself. name and home may be empty (a dynamic uid has no account). */
struct app_user {
	bool drop;
	uid_t uid;
	gid_t gid;
	char name[AGENT_NAME_MAX + 16];
	char home[512];
};
int agent__app_user(const char *state_dir, const char *app, const char *run_user,
		    struct app_user *out, struct err *e);

struct instance {
	struct instance *next;
	struct agent *ag; /* borrowed */
	char id[INSTANCE_ID_MAX];
	char app[AGENT_NAME_MAX + 1];
	char release[HASH_ID_LEN + 1];
	struct strv argv; /* owned: run.command */
	struct strv env;  /* owned: "K=V", the whole environment but PORT */
	struct app_user user;
	json_t *user_env; /* owned: the body's env, persisted */
	struct sup sup;
	int stop_signal;
	pid_t pid; /* 0 when not running */
	uint64_t pid_start;
	bool is_child; /* we forked it (waitid works) or adopted it (no status) */
	bool adopted;
	int pidfd;
	struct event *ev_exit; /* owned */
	pid_t log_pid;	       /* its log writer (watched through agent.logws) */
	uint64_t log_start;
	struct event *timer; /* owned: backoff or kill timer */
	int port;
	int64_t started_at; /* unix seconds of the last spawn */
	int64_t restarts;
	char last_exit[LAST_EXIT_MAX];
	struct waiter *waiters; /* owned list */
	bool remove_when_stopped;
};

struct agent {
	char *state_dir;				  /* owned */
	char *sock_path;				  /* owned */
	char *table_path;				  /* owned: <state>/agent/instances.json */
	char *self_exe;					  /* owned: this binary, for log writers */
	struct objstore *os;				  /* owned */
	struct event_base *base;			  /* owned */
	struct evhttp *http;				  /* owned */
	struct work_pool *pool;				  /* owned */
	struct instance *inst;				  /* owned list */
	struct evhttp_connection *conns[AGENT_MAX_CONNS]; /* borrowed: open, counted */
	size_t n_conns;
	int64_t started_at;
	int lock_fd;
	struct stop_wait *stop_waits; /* owned: parked bulk stops (emergency, stop-all) */
	struct logw_watch *logws;     /* owned: log writers still running */
	struct app_proxy *proxies;    /* owned: one per app with a proxy (proxy.c) */
	char *proxies_path;           /* owned: <state>/agent/proxies.json */
	struct proxy_engine *eng;     /* owned, created on first use: TCP-mode proxies */
	struct ev_rest api_rest;      /* the API listener rests after a failed accept */
	int keeper_fd; /* owned: the pair to the keeper (keeper.c), -1 without one */
	int *kept;     /* owned: listeners inherited from the last agent, -1 once taken */
	size_t n_kept;
	bool shutting_down;
	unsigned save_hold;
	bool save_dirty;
};

struct logw_watch { /* a log writer until it exits (it may outlive its instance's run) */
	struct logw_watch *next;
	struct agent *ag; /* borrowed */
	pid_t pid;
	int pidfd;
	bool is_child;
	struct event *ev; /* owned */
};

/* keeper.c: the agent's side of the keeper (all no-ops without one) */
void agent__keeper_init(struct agent *ag, const struct agent_keep *k);
int agent__keeper_take_api(struct agent *ag); /* the inherited API listener, or -1 */
void agent__keeper_hold(struct agent *ag, int fd);
void agent__keeper_drop(struct agent *ag, const char *listen); /* before closing a listener */
void agent__keeper_ready(struct agent *ag); /* closes inherited listeners nobody took */
void agent__keeper_done(struct agent *ag);

/* instance.c */
struct instance *agent_find(struct agent *ag, const char *app, const char *iid);
size_t agent_count(const struct agent *ag, const char *app);
json_t *instance_json(const struct instance *in);
/* Creates, records and starts one instance (the release dir must exist). */
int instance_create(struct agent *ag, const char *app, const char *release,
		    const struct start_req *rq, struct instance **out, struct err *e);
void instance_event(struct instance *in, enum sup_event ev);
void instance_kill_now(struct instance *in); /* emergency: SIGKILL the group, mark stopping */
void instance_free(struct instance *in);
/* A free loopback port for an instance: not a proxy's listen port, not another instance's, not
 * one of reserved[] (the app's proxy address the controller is about to bind). */
int agent__alloc_port(struct agent *ag, const int *reserved, size_t n_reserved, int *out,
		      struct err *e);
/* proxy.c: is port the listen port of one of this agent's proxies? */
bool agent__proxy_port(const struct agent *ag, int port);
/* Re-adoption: watch a recorded live process (not our child: no exit status). */
int instance_adopt(struct instance *in, pid_t pid, uint64_t start, enum sup_state st);
int agent__instance_new(struct agent *ag, const char *app, const char *release, const char *id,
			json_t *user_env, int64_t stop_timeout_ms, struct instance **out,
			struct err *e);
int agent__watch_log(struct agent *ag, pid_t pid, bool is_child);
void agent__logws_free(struct agent *ag);
void agent_remove(struct agent *ag, struct instance *in);
void agent__append(struct agent *ag, struct instance *in); /* keeps creation order */
int agent_save(struct agent *ag);
/* Batches saves (a start of N instances writes the table once, before the answer). */
void agent_save_hold(struct agent *ag);
int agent_save_release(struct agent *ag);
int agent_load_and_adopt(struct agent *ag, struct err *e);
char *agent_release_dir(const struct agent *ag, const char *release); /* NULL if bad id */
/* Called when an instance reached `stopped` (answers waiters; may free the instance). */
void agent__instance_stopped(struct instance *in);

/* activate.c — blocking (hashes every file): run it on a worker */
int agent_activate(struct objstore *os, const char *state_dir, const char *id, char **out_path,
		   size_t *out_files, struct err *e);

/* logs.c */
#define LOG_LINE_MAX	 16384
#define LOG_ROTATE_BYTES (10u * 1024 * 1024)
#define LOG_KEEP	 3
struct logw {
	char *path; /* owned */
	int fd;
	uint64_t size, max_bytes;
	unsigned keep;
};
int logw_open(struct logw *w, const char *path, uint64_t max_bytes, unsigned keep);
/* Writes "TS STREAM LINE\n" (line without its newline), rotating first when it would not fit. */
int logw_line(struct logw *w, int64_t now_ns, const char *stream, const char *line, size_t n);
void logw_close(struct logw *w);
char *agent_log_path(const char *state_dir, const char *app, const char *iid);
/* The last `tail` lines of an instance's log (and its rotated predecessor) as JSON objects. */
int agent_log_tail(const char *path, size_t tail, json_t **out, struct err *e);
/* The same, reading at most the last `window` bytes of each file (cheap enough per request). */
int agent_log_tail_window(const char *path, size_t tail, size_t window, json_t **out,
			  struct err *e);
/* Why an instance that exited is not running (instance.c): {"why": "exited N times; last
 * exit: …; its last words: …", "last_lines": [..]} from its last exit and the tail of its
 * log; NULL while it runs or if it never exited. */
json_t *instance_why(const struct instance *in);
/* 409 "instance X is STATE, not running: WHY" */
void agent__reply_not_running(struct evhttp_request *req, const struct instance *in);

/* proxy.c: the apps' proxies (mode http: hproxy; tcp: the engine) */
int agent_proxies_load(struct agent *ag, struct err *e); /* re-creates <state>/agent/proxies.json */
void agent_proxies_free(struct agent *ag);
/* GET/PUT/DELETE /v1/apps/{app}/proxy */
void agent_proxy_route(struct agent *ag, struct evhttp_request *req, const char *app);
/* Emergency stop of the app's traffic (503 or refused), persisted. Returns whether it had one. */
bool agent_proxy_stop_traffic(struct agent *ag, const char *app);

/* server.c */
void agent_reply_json(struct evhttp_request *req, int status, json_t *body); /* steals body */
void agent_reply_err(struct evhttp_request *req, const struct err *e);
/* objects.c: /v1/objects/… and /v1/releases/{id}/verify; false when the path is not theirs */
bool agent__objects_route(struct agent *ag, struct evhttp_request *req, char *segs[], int n);
void agent_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
/* check.c: POST …/instances/{iid}/check */
void agent_handle_check(struct agent *ag, struct evhttp_request *req, struct instance *in);
/* api.c */
char *agent__body_of(struct evhttp_request *req, size_t *out_n); /* NUL-terminated copy */
void agent_api_route(struct agent *ag, struct evhttp_request *req);
void agent_api_instance_gone(struct agent *ag, struct instance *in);
void agent_api_shutdown(struct agent *ag);

#endif
