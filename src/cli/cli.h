/* cli: one file per command family. Commands parse their own options, print for people (or
 * JSON with --json) and return the process exit code: 0 ok, 1 the checked thing failed,
 * 2 usage or input error. Library errors are printed here, once. */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include "base/base.h"

#include <getopt.h>

struct config;
struct objstore;
struct store;

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
/* Is stdout a terminal (and not --json)? For progress lines and colour. */
bool cli_is_tty(const struct cli_ctx *ctx);

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
extern const struct cli_command cli_cmd_fault;

#endif
