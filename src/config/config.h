/* config: cairn.yml → an immutable, typed struct with every default filled in.
 * Parsing (libfyaml) and validation happen once; every error carries FILE:LINE:COL.
 * Nothing here starts processes, touches the network or writes state. */
#ifndef CAIRN_CONFIG_H
#define CAIRN_CONFIG_H

#include "base/base.h"

#define CONFIG_MAX_BYTES (1024 * 1024) /* a cairn.yml larger than this is refused */
#define CONFIG_DEFAULT_NAME "cairn.yml"
#define CONFIG_HOSTS_MAX 256    /* hosts: entries (and the largest rollout.parallel) */
#define CONFIG_INSTANCES_MAX 64 /* instances per host */
#define CONFIG_CHECKS_MAX 64    /* acceptance: checks */
#define CONFIG_FAULT_PROXIES_MAX 256 /* faults.proxies entries */
#define CONFIG_FAULT_TOXICS_MAX 32   /* toxics per stream of one fault proxy */

struct json_t;

enum config_pins { CONFIG_PINS_REQUIRE, CONFIG_PINS_WARN };

struct config_kv {
	char *key, *value; /* owned */
};

struct config_host {
	char *name; /* owned; "local" for the local host */
	char *ssh;  /* owned; "user@host" or NULL for local */
	char *state; /* owned; ssh hosts: the remote state dir (default CONFIG_REMOTE_STATE) */
	char *cairn; /* owned; ssh hosts: the remote cairn binary (default "cairn") */
};

#define CONFIG_REMOTE_STATE "/var/lib/cairn"
#define CONFIG_REMOTE_STATE_MAX 90 /* <state>/agent.sock must fit a unix socket path */

struct config_header {
	char *name, *value; /* owned */
};

struct config_check {
	char *name;   /* owned */
	char *method; /* owned; default "GET" */
	char *path;   /* owned; must start with '/' */
	char *body;   /* owned; may be NULL */
	struct config_header *headers; /* owned array */
	size_t n_headers;
	int expect_status;          /* default 200 */
	char *expect_body_contains; /* owned; may be NULL */
	int64_t expect_max_latency_ms; /* 0 = no bound */
};

/* A toxic of a faults: proxy. Types and attribute names are the Toxiproxy ones that
 * src/proxy knows (proxy_toxic_type_parse, proxy_toxic_attr_names). */
struct config_toxic {
	char *name;   /* owned; default TYPE_STREAM, as the Toxiproxy API names it */
	char *type;   /* owned; "latency", "bandwidth", ... */
	bool upstream; /* stream: upstream (client → server) or downstream (the default) */
	double toxicity; /* 0..1, default 1 */
	struct {
		char *name; /* owned */
		int64_t value;
	} attrs[4]; /* as written (every type has at most 3) */
	size_t n_attrs;
	int line, col; /* of the entry, for errors found when it is applied */
};

struct config_fault_proxy {
	char *name;     /* owned; unique */
	char *listen;   /* owned; HOST:PORT (port 0: any) */
	char *upstream; /* owned; HOST:PORT */
	bool enabled;   /* default true; false is the 'down' fault */
	struct config_toxic *toxics; /* owned array, in file order */
	size_t n_toxics;
	int line, col;
};

struct config {
	char *file; /* owned; the path it was read from (for messages) */
	char *dir;  /* owned; the directory holding the file: the app's source tree */
	char *app;  /* owned; [a-z0-9][a-z0-9_.-]{0,62} */

	struct {
		struct strv command; /* may be empty: nothing is run */
		struct strv exclude; /* default [".git", "__pycache__"] */
		enum config_pins pins; /* default require */
	} build;

	struct {
		struct strv command;   /* required, non-empty */
		struct config_kv *env; /* owned array, sorted by key, keys unique */
		size_t n_env;
		int64_t stop_timeout_ms; /* default 10s */
		int stop_signal;         /* default SIGTERM; "stop_signal: SIGINT" */
		char *user; /* owned; NULL: a dedicated user per app (docs/security.md) */
	} run;

	char *listen_host; /* owned; default "127.0.0.1" ("listen: 8080" or "0.0.0.0:8080") */
	int listen_port;   /* required, 1..65535 */

	struct config_host *hosts; /* owned array; default [local] */
	size_t n_hosts;
	int instances; /* per host; default 1, 1..64 */

	struct {
		char *http; /* owned; path probed, e.g. "/healthz"; NULL = TCP connect check */
		int64_t interval_ms;       /* default 1s */
		int64_t timeout_ms;        /* default 2s */
		int healthy_after;         /* default 2 */
		int64_t start_deadline_ms; /* default 60s */
	} health;

	struct config_check *acceptance; /* owned array; may be empty */
	size_t n_acceptance;

	struct {
		int parallel;          /* default 1 */
		int64_t bake_ms;       /* default 30s */
		double max_error_rate; /* fraction 0..1; default 0.01 ("1%") */
		int64_t max_p99_ms;    /* default 0 = no absolute bound */
		double max_p99_ratio;  /* default 0 = no ratio bound */
		int min_requests;      /* a gate judges only this many requests or more (20);
					* with fewer, the bake says "too little traffic" */
		bool auto_rollback;    /* default true */
		bool unjudged_pass;    /* rollout.unjudged: a bake that could not judge (too little
					* traffic even after repeating the acceptance checks) passes,
					* marked unjudged (pass), or fails the deploy (fail, default) */
	} rollout;

	/* faults: standalone Toxiproxy-style proxies with toxics, and where `cairn serve` answers
	 * the Toxiproxy-compatible API (docs/faults.md). */
	struct {
		char *listen; /* owned; HOST:PORT of the API, NULL: no API in `cairn serve` */
		struct config_fault_proxy *proxies; /* owned array */
		size_t n_proxies;
	} faults;
	bool faults_only; /* read by config_load_faults from a file holding only faults: */
};

/* Reads and validates `path`. On failure *out is untouched and e says FILE:LINE:COL. */
int config_load(const char *path, struct config **out, struct err *e);
/* Same from memory; `name` is used in messages (and as `file`). `dir` may be NULL ("."). */
int config_parse(const char *name, const char *dir, const char *text, size_t len,
		 struct config **out, struct err *e);
void config_free(struct config *c);
/* For `cairn fault serve -c FILE` and `cairn serve -c FILE`: like config_load, but a file whose
 * only top-level key is faults: is accepted too (faults_only is then true and the app fields
 * are unset). A file with any other key is checked whole, as config_load does. */
int config_load_faults(const char *path, struct config **out, struct err *e);
int config_parse_faults(const char *name, const char *text, size_t len, struct config **out,
			struct err *e);

/* The resolved config as JSON (every default filled in, durations in milliseconds, signals
 * by name): what `cairn check --json` prints. Returns a new reference, or NULL on OOM. */
struct json_t *config_to_json(const struct config *c);

/* What `cairn init` guessed from a directory's layout. */
struct config_guess {
	char *app;          /* owned; the directory's name, sanitised to an app name */
	const char *layout; /* static: "python", "django", "node", "ruby", "go", "rust", "unknown" */
	const char *found;  /* static: the file that decided it ("app.py"), or NULL */
	struct strv run;    /* run.command */
	struct strv build;  /* build.command; may be empty */
	/* health.http: the app speaks HTTP when its layout is a web one (Django, Rack) or one of
	 * its own files names a web framework or HTTP server (docs/config.md, `cairn init`). */
	const char *http;   /* static: the path health probes GET ("/healthz", "/"), NULL: TCP */
	char *http_why;     /* owned: what decided it, e.g. "http.server in app.py"; NULL: TCP */
	bool http_route;    /* http is a route found in the app's files (not the "/" fallback) */
};
int config_starter_guess(const char *dir, struct config_guess *out, struct err *e);
void config_guess_done(struct config_guess *g);
/* Writes a commented starter cairn.yml for `dir` into b, guessing run.command from the
 * directory's layout (app.py, main.py, manage.py, package.json, Gemfile, go.mod, Cargo.toml…).
 * The text always passes config_parse. */
int config_starter(const char *dir, struct buf *b, struct err *e);

/* Percentages "1%", "0.5%" or a fraction "0.01" → fraction 0..1. -EINVAL for bad syntax,
 * -ERANGE above 100%. */
int config_parse_percent(const char *s, double *out);
/* "SIGTERM" for SIGTERM; NULL for a signal cairn.yml cannot name. */
const char *config_signal_name(int sig);

#endif
