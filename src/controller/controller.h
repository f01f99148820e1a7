/* controller: `cairn serve` — deploy jobs as a persisted state machine, their runners, and the
 * HTTP API (evhttp on a unix socket, optionally TCP + bearer token). This header is the whole
 * face of the module: the daemon entry point plus the pure pieces unit tests and fuzz targets
 * reach (state table, request-body and header parsing). */
#ifndef CAIRN_CONTROLLER_H
#define CAIRN_CONTROLLER_H

#include "base/base.h"
#include "store/store.h"

struct controller_opts {
	const char *state_dir;  /* required */
	const char *listen;     /* "HOST:PORT" for TCP, or NULL: unix socket only */
	const char *token_file; /* required with listen; created (0600) when missing */
	bool no_agent;          /* do not start a local agent */
	int queue_max;          /* queued deploys per app (0: CTL_QUEUE_MAX); beyond: 409 */
	const char *self_exe;   /* this binary, to start `cairn agent` (argv, never a shell) */
	const char *faults_config; /* cairn.yml whose faults: section to run (faults.c), or NULL */
};

/* Runs until SIGTERM/SIGINT. Returns 0 after a clean shutdown. */
int controller_serve(const struct controller_opts *o, struct err *e);

/* ---- jobs: the state machine (jobs.c) ----------------------------------------------------- */

bool job_transition_allowed(enum job_state from, enum job_state to);
bool job_state_terminal(enum job_state st);

enum deploy_step {
	STEP_ENSURE_OBJECTS,
	STEP_ACTIVATE,
	STEP_START,
	STEP_HEALTH,
	STEP_ACCEPT,
	STEP_SWITCH,
	STEP_BAKE,
	STEP_CLEANUP,
	STEP_COUNT,
};
/* "ensure_objects", "activate", "start", "health", "accept", "switch", "bake", "cleanup" */
const char *deploy_step_name(enum deploy_step st);
int deploy_step_parse(const char *name, enum deploy_step *out);
/* Steps that may run again after a crash interrupted them (no effect beyond the first run). */
bool deploy_step_rerunnable(enum deploy_step st);

/* ---- bake gates (gates.c): pure — traffic counters in, a verdict out ----------------------- */

#define GATE_BUCKETS 100 /* = PROXY_HTTP_BUCKETS: bucket i holds latencies up to 2^(i/4) us */
struct gate_traffic {
	uint64_t requests, errors; /* errors: 5xx answers (the proxy's own 502/504 included) */
	uint64_t hist[GATE_BUCKETS];
};
struct gate_limits {
	double max_error_rate; /* fraction; the gate fails above it */
	int64_t max_p99_ms;    /* 0: none */
	double max_p99_ratio;  /* 0: none */
	int min_requests;      /* fewer requests than this: not judged */
};
enum gate_verdict {
	GATE_PASS,      /* every gate judged and passed */
	GATE_FAIL,      /* a gate failed: why says which, with the numbers */
	GATE_WAIT,      /* not final and not enough to judge yet */
	GATE_TOO_LITTLE /* final, and too little traffic to judge some gate: why says which */
};
/* Judges the new release's traffic since the switch against the limits and the previous
 * release's traffic (baseline; NULL when there is no previous release: the ratio gate does not
 * apply; empty when it had no traffic: the ratio gate cannot judge). Not final: only a clear
 * failure ends the bake early (error rate over the limit with min_requests seen; p99 over a
 * limit with 5 × min_requests seen); final: every gate is judged. */
enum gate_verdict gate_judge(const struct gate_traffic *new_tr, const struct gate_traffic *base,
			     const struct gate_limits *lim, bool final, char *why, size_t why_n);
/* Counts one request the bake sent itself (an acceptance check): its latency into the
 * histogram's bucket, and an error when it failed. */
void gate_add_latency(struct gate_traffic *t, int64_t latency_ms, bool error);
/* p (0..100) percentile of a histogram in milliseconds (0 when empty). */
double gate_percentile_ms(const uint64_t hist[GATE_BUCKETS], double p);

/* ---- API input (body.c): every byte here comes from outside --------------------------------- */

#define API_BODY_MAX (1024 * 1024)
#define API_HEADERS_MAX (16 * 1024)
#define API_REF_MAX 255

struct api_deploy_body {
	char release[API_REF_MAX + 1]; /* REF as given; "" for rollback without --to */
	char reason[STORE_REASON_MAX];
	bool force;
	/* hex sha256 of the canonical JSON of the normalised body (sorted keys, defaults filled) */
	char fingerprint[HASH_HEX_LEN + 1];
};

/* Stop body {"reason": "…", "by": "who"}: both optional, an empty body is {}; unknown keys
 * are refused. reason holds STORE_REASON_MAX bytes, by STORE_OWNER_MAX. */
int api_parse_stop_body(const char *p, size_t n, char *reason, char *by, struct err *e);

/* Deploy body {"release": REF, "reason": "…", "force": false}: release required; unknown
 * keys refused. Rollback body {"to": REF?, "reason": "…"} when `rollback` (release = to). */
int api_parse_deploy_body(const char *p, size_t n, bool rollback, struct api_deploy_body *out,
			  struct err *e);
/* Idempotency-Key: an sf-string ("…") or a bare token; 1..255 visible ASCII characters. */
int api_parse_idem_key(const char *v, char out[STORE_IDEM_KEY_MAX + 1], struct err *e);
/* Last-Event-ID: a non-negative decimal event id. */
int api_parse_event_id(const char *v, int64_t *out);
/* "Bearer TOKEN" → the token (borrowed, within v), or NULL. */
const char *api_parse_bearer(const char *v);
/* An Authorization value that carries `token` (compared in constant time); false for NULLs. */
bool api_token_ok(const char *authorization, const char *token);

/* The request-head follower (conns.c feeds it each connection's bytes as they arrive, before
 * evhttp parses them): keeps the start of the request line (for its route's body limit) and
 * notes whether an Authorization line carries the token; stops at the empty line that ends
 * the head. Lines longer than API_HEAD_LINE_KEEP are skipped. Pure; fuzzed. */
#define API_HEAD_LINE_KEEP 1024
#define API_HEAD_REQLINE_KEEP 48
struct api_head_scan {
	bool first_line, line_over, auth_ok, done;
	size_t line_n, reqline_n;
	char line[API_HEAD_LINE_KEEP];
	char reqline[API_HEAD_REQLINE_KEEP];
};
void api_head_scan_reset(struct api_head_scan *h);
/* Returns the bytes used: through the LF that ends the head (h->done), or all n. */
size_t api_head_scan(struct api_head_scan *h, const char *p, size_t n, const char *token);
/* App names as in cairn.yml: [a-z0-9][a-z0-9_.-]{0,62}. */
bool api_app_name_ok(const char *s, size_t n);

enum api_route {
	ROUTE_NONE,
	ROUTE_DEPLOYS,  /* /v1/apps/{app}/deploys */
	ROUTE_ROLLBACK, /* /v1/apps/{app}/rollback */
	ROUTE_STOP,     /* /v1/apps/{app}/stop */
	ROUTE_UNLOCK,   /* /v1/apps/{app}/lease */
	ROUTE_INSTANCES, /* /v1/apps/{app}/instances */
	ROUTE_APP,      /* /v1/apps/{app} */
	ROUTE_APPS,     /* /v1/apps */
	ROUTE_JOB,      /* /v1/jobs/{id} */
	ROUTE_JOBS,     /* /v1/jobs */
	ROUTE_EVENTS,   /* /v1/events */
	ROUTE_METRICS,  /* /metrics */
	ROUTE_OBJECTS_MISSING, /* /v1/objects/missing */
	ROUTE_OBJECT,   /* /v1/objects/{hex} (hex "" when the name is not a digest) */
	ROUTE_RELEASES, /* /v1/releases */
	ROUTE_COUNT,
};
struct api_path {
	enum api_route route;
	char app[64];
	int64_t job_id;
	char hex[HASH_HEX_LEN + 1]; /* ROUTE_OBJECT: lowercase hex SHA-256, or "" */
};
/* ---- object upload by digest (body-objects.c; handlers in api-objects.c) -------------------
 * The same shapes as the agent's object routes: POST /v1/objects/missing {"digests":[hex…]}
 * → {"missing":[hex…]}, PUT /v1/objects/{hex} raw bytes, POST /v1/releases {"id","tag"}.
 * The missing-list body is parsed by objstore_parse_digests (release/release.h), the same
 * parser and limits as the agent's (OBJSTORE_DIGESTS_MAX, OBJSTORE_DIGESTS_BODY_MAX). */

/* largest object a PUT takes: evhttp 2.1 buffers a body whole before any handler runs, so this
 * is also the server's body limit (each other route checks its own smaller one) */
#define API_OBJECT_MAX (256LL * 1024 * 1024)

struct api_release_body {
	char hex[HASH_HEX_LEN + 1];   /* the manifest's digest ("sha256:" prefix accepted) */
	char tag[STORE_TAG_MAX + 1];  /* "" for none */
};
/* {"id": "sha256:HEX" | "HEX", "tag": T?}; a tag is 1..128 characters without '/', ':',
 * spaces or control characters (the rule of `cairn build --tag`). */
int api_parse_release_body(const char *p, size_t n, struct api_release_body *out, struct err *e);
/* Is s[0..n) a lowercase hex SHA-256? */
bool api_digest_ok(const char *s, size_t n);

/* Splits a request path (query string ignored). Unknown paths give ROUTE_NONE. */
void api_match_path(const char *path, struct api_path *out);
const char *api_route_name(enum api_route r);

/* One owner per port on a host (ports.c): -EADDRINUSE, with a message naming the other app, when
 * cfg's listen is one that another app of `ports` (GET /v1/apps's "ports") has on one of cfg's
 * hosts — the same host and port, or the same port where either side is every interface. */
struct config;
struct json_t;
int controller_ports_clash(const struct json_t *ports, const char *app, const struct config *cfg,
			   struct err *e);

#endif
