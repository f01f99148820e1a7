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
	ROUTE_COUNT,
};
struct api_path {
	enum api_route route;
	char app[64];
	int64_t job_id;
};
/* Splits a request path (query string ignored). Unknown paths give ROUTE_NONE. */
void api_match_path(const char *path, struct api_path *out);
const char *api_route_name(enum api_route r);

#endif
