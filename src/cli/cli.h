/* cli: one file per command family. Commands parse their own options, print for people (or
 * JSON with --json) and return the process exit code: 0 ok, 1 the checked thing failed,
 * 2 usage or input error. Library errors are printed here, once. */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include "base/base.h"
#include "base/httpc.h"

#include <getopt.h>

struct config;
struct objstore;
struct store;
struct json_t;

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
	const char *summary;               /* one line for `cairn --help` */
	const char *help;                  /* man-page style text for `cairn CMD --help` */
};

/* Options every command takes. */
struct cli_ctx {
	bool json;
	const char *state_flag;  /* --state DIR */
	const char *config_path; /* -c/--config FILE */
	const char *cmd;         /* command name, for messages */
};

/* getopt_long entries for the common options; put CLI_COMMON_OPTS first in a command's table
 * and pass unknown option characters to cli_common_opt. */
#define CLI_COMMON_OPTS                                                                          \
	{ "json", no_argument, NULL, 'J' }, { "state", required_argument, NULL, 'S' },            \
		{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' }
#define CLI_COMMON_SHORT "c:h"

/* Handles a common option. Returns 1 if consumed, 0 if not ours, or an exit code + 100 when
 * the command must exit (help printed: 100, usage error: 102). Use via CLI_OPT_CASES. */
int cli_common_opt(struct cli_ctx *ctx, const struct cli_command *cmd, int c, const char *arg);

/* Prints "cairn CMD: error: MSG" and "see 'cairn CMD --help'"; returns 2. */
int cli_usage(const struct cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints an error (JSON on stdout with --json, else text on stderr); returns its exit code. */
int cli_fail(const struct cli_ctx *ctx, const struct err *e);
void cli_print_help(const struct cli_command *cmd, FILE *out);
/* Machine error code string for an err: "input", "check_failed", "not_found", ... */
const char *cli_err_code(const struct err *e);

/* Loads the config: -c FILE, else ./cairn.yml. */
int cli_load_config(const struct cli_ctx *ctx, struct config **out, struct err *e);
/* Opens the state directory (object store + state database), creating it. */
int cli_open_state(const struct cli_ctx *ctx, struct objstore **out_os, struct store **out_st,
		   struct err *e);
/* Appends a JSON array of tags as "v1,v2" (each escaped for the terminal: name_safe) to b;
 * nothing for NULL or an empty array. */
void cli_tags_text(const struct json_t *tags, struct buf *b);
/* The same as " (v1,v2)" after a release id; nothing when it has no tags. */
void cli_release_tags_text(const struct json_t *tags, struct buf *b);
/* For read commands: the state directory must exist and hold a state database, else a
 * CAIRN_ENOTFOUND "nothing is there" (a typo'd --state must not create an empty one). */
int cli_state_exists(const struct cli_ctx *ctx, struct err *e);
int cli_open_state_existing(const struct cli_ctx *ctx, struct objstore **out_os,
			    struct store **out_st, struct err *e);
/* Is stdout a terminal (and not --json)? For progress lines and colour. */
bool cli_is_tty(const struct cli_ctx *ctx);

/* ---- API client (api.c): everything that touches deploy state goes to the controller ---- */

#define CLI_API_TIMEOUT_MS 30000 /* one API request; the controller answers well within it */

struct cli_api_opts {
	const char *addr;       /* --addr HOST:PORT, else CAIRN_ADDR, else the unix socket */
	const char *token_file; /* --token-file, else CAIRN_TOKEN_FILE */
};
struct cli_api {
	struct httpc c;
	char *sock, *url, *token; /* owned */
};
int cli_api_open(const struct cli_ctx *ctx, const struct cli_api_opts *o, struct cli_api *out,
		 struct err *e);
void cli_api_done(struct cli_api *a);
const char *cli_api_where(const struct cli_api *a);
/* One request; body (taken) may be NULL. A 4xx/5xx answer is an error (CAIRN_EINPUT for
 * 400/413/422, CAIRN_ENOTFOUND for 404, CAIRN_ECHECK otherwise) with the server's message;
 * *out_status is set whenever an answer came. */
int cli_api_call(struct cli_api *a, const char *method, const char *path, struct json_t *body,
		 const char *idem_key, long *out_status, struct json_t **out, struct err *e);
/* cli_api_call that also gives the error's code ("digest_mismatch", …) on a 4xx/5xx answer. */
#define CLI_API_CODE_MAX 64
int cli_api_call_code(struct cli_api *a, const char *method, const char *path,
		      struct json_t *body, const char *idem_key, long *out_status,
		      struct json_t **out, char out_code[CLI_API_CODE_MAX], struct err *e);
/* Is the controller remote: --addr or CAIRN_ADDR set (TCP)? Then state on this machine is
 * not the controller's, and builds upload their objects (upload.c). */
bool cli_api_is_remote(const struct cli_api_opts *o);

/* ---- upload (upload.c): a locally stored release to a remote controller ---- */

/* Where builds for a remote controller keep their objects: --state DIR when given, else
 * $XDG_CACHE_HOME/cairn, else ~/.cache/cairn (malloc'd). */
char *cli_cache_dir(const struct cli_ctx *ctx);

#define CLI_UPLOAD_PARALLEL 4       /* objects uploaded at once */
#define CLI_PART_BYTES (16 << 20)   /* an object bigger than this is uploaded in parts */
#define CLI_UPLOAD_BATCH 100000     /* digests per missing-list request (OBJSTORE_DIGESTS_MAX) */

struct cli_upload_result {
	size_t objects, uploaded, skipped; /* distinct objects of the release (+ its manifest) */
	int64_t uploaded_bytes, skipped_bytes;
	char tag[129];         /* the tag the release carries on the controller, "" none */
	char dropped_tag[129]; /* with tag_optional: a taken tag the release was registered without */
	bool existed;          /* the controller already had the release recorded */
};
/* Asks the controller which of the release's objects it lacks, uploads only those (at most
 * CLI_UPLOAD_PARALLEL at once, progress on stderr unless --json) and registers the release
 * with tag (may be NULL). With tag_optional a tag the controller refuses as taken is dropped
 * (import's rule) instead of failing. */
int cli_upload_release(struct cli_api *a, const struct cli_ctx *ctx, struct objstore *os,
		       const char *id, const char *tag, bool tag_optional,
		       struct cli_upload_result *out, struct err *e);

/* --app, else the app of ./cairn.yml (or -c FILE). */
int cli_app_name(const struct cli_ctx *ctx, const char *flag, char **out, struct err *e);

/* Follows a job's events until it is terminal (follow.c); out_state gets its final state. */
int cli_follow_job(struct cli_api *a, const struct cli_ctx *ctx, int64_t job, int64_t wait_ms,
		   char out_state[32], struct err *e);

/* One job in detail (job.c): `cairn job N`, `cairn history N`. cli_job_show asks the
 * controller and prints (returns the exit code); cli_job_print prints a GET /v1/jobs/N answer. */
int cli_job_show(const struct cli_ctx *ctx, const struct cli_api_opts *ao, const char *arg);
int cli_job_print(struct json_t *job);

/* getopt entries and handling shared by the commands that talk to the controller */
#define CLI_API_LONGOPTS                                                                          \
	{ "app", required_argument, NULL, 'a' }, { "addr", required_argument, NULL, 'A' },        \
		{ "token-file", required_argument, NULL, 'T' }
int cli_api_opt(struct cli_api_opts *o, const char **app, int c, const char *arg);

/* The command table (main.c) */
extern const struct cli_command *const cli_commands[];
const struct cli_command *cli_find(const char *name);

/* Commands, one per file family */
extern const struct cli_command cli_cmd_build, cli_cmd_releases, cli_cmd_verify, cli_cmd_diff;
extern const struct cli_command cli_cmd_check;
extern const struct cli_command cli_cmd_init;
extern const struct cli_command cli_cmd_pins;
extern const struct cli_command cli_cmd_export;
extern const struct cli_command cli_cmd_import;
extern const struct cli_command cli_cmd_serve;
extern const struct cli_command cli_cmd_deploy, cli_cmd_rollback, cli_cmd_stop, cli_cmd_unlock;
extern const struct cli_command cli_cmd_status, cli_cmd_history;
extern const struct cli_command cli_cmd_job;
extern const struct cli_command cli_cmd_apps, cli_cmd_rm;
extern const struct cli_command cli_cmd_agent;
extern const struct cli_command cli_cmd_fault;
extern const struct cli_command cli_cmd_proxy;

#endif
