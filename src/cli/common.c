/* cli common: option handling, help, error printing and opening config/state for commands.
 * Only the CLI prints errors; everything below it fills a struct err. */
#include "cli/cli.h"

#include "release/release.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_common_opt(struct cli_ctx *ctx, const struct cli_command *cmd, int c, const char *arg)
{
	ctx->cmd = cmd->name;
	switch (c) {
	case 'J':
		ctx->json = true;
		return 1;
	case 'S':
		ctx->state_flag = arg;
		return 1;
	case 'c':
		ctx->config_path = arg;
		return 1;
	case 'h':
		cli_print_help(cmd, stdout);
		return 100;
	case '?':
	case ':':
		fprintf(stderr, "see 'cairn %s --help'\n", cmd->name);
		return 102;
	default:
		return 0;
	}
}

int cli_usage(const struct cli_command *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "cairn %s: error: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nsee 'cairn %s --help'\n", cmd->name);
	return 2;
}

const char *cli_err_code(const struct err *e)
{
	switch (e->code) {
	case CAIRN_EINPUT:
	case EINVAL:
		return "input";
	case CAIRN_ECHECK:
		return "check_failed";
	case CAIRN_ENOTFOUND:
	case ENOENT:
		return "not_found";
	case CAIRN_ECORRUPT:
		return "corrupt";
	case CAIRN_EAMBIGUOUS:
		return "ambiguous";
	case E2BIG:
		return "too_large";
	default:
		return "io";
	}
}

int cli_fail(const struct cli_ctx *ctx, const struct err *e)
{
	if (ctx && ctx->json) {
		json_t *o = json_pack("{s:s,s:s}", "code", cli_err_code(e), "message", e->msg);
		if (e->file[0])
			json_object_set_new(o, "file", json_string(e->file));
		if (e->line > 0) {
			json_object_set_new(o, "line", json_integer(e->line));
			json_object_set_new(o, "col", json_integer(e->col > 0 ? e->col : 1));
		}
		json_t *top = json_pack("{s:o}", "error", o);
		json_dumpf(top, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(top);
	} else {
		err_print(e, stderr);
	}
	return err_exit_code(e);
}

void cli_print_help(const struct cli_command *cmd, FILE *out)
{
	fputs(cmd->help, out);
	if (cmd->help[0] && cmd->help[strlen(cmd->help) - 1] != '\n')
		fputc('\n', out);
}

/* Says where the state directory came from, for "nothing is there" messages. */
static const char *state_source(const struct cli_ctx *ctx)
{
	if (ctx->state_flag)
		return "--state";
	if (getenv("CAIRN_STATE") && *getenv("CAIRN_STATE"))
		return "$CAIRN_STATE";
	return "the default";
}

int cli_state_exists(const struct cli_ctx *ctx, struct err *e)
{
	char *dir = store_state_dir(ctx->state_flag);
	char *db = fs_join(dir, "state.db");
	int r = 0;
	if (!fs_is_dir(dir))
		r = err_set(e, CAIRN_ENOTFOUND,
			    "nothing is there: no state directory %s (from %s); check the path, or "
			    "'cairn build' makes one",
			    dir, state_source(ctx));
	else if (!fs_exists(db))
		r = err_set(e, CAIRN_ENOTFOUND,
			    "nothing is there: %s (from %s) holds no cairn state (no state.db); check "
			    "the path, or 'cairn build' makes one",
			    dir, state_source(ctx));
	free(db);
	free(dir);
	return r;
}

int cli_open_state_existing(const struct cli_ctx *ctx, struct objstore **out_os,
			    struct store **out_st, struct err *e)
{
	int r = cli_state_exists(ctx, e);
	return r < 0 ? r : cli_open_state(ctx, out_os, out_st, e);
}

int cli_open_state(const struct cli_ctx *ctx, struct objstore **out_os, struct store **out_st,
		   struct err *e)
{
	char *dir = store_state_dir(ctx->state_flag);
	struct objstore *os = NULL;
	struct store *st = NULL;
	int r = fs_mkdir_p(dir, 0700, e);

	if (r == 0)
		r = objstore_open(dir, &os, e);
	if (r == 0)
		r = store_open_sqlite(dir, &st, e);
	if (r < 0) {
		err_prefix(e, "state directory %s", dir);
		objstore_free(os);
		free(dir);
		return r;
	}
	free(dir);
	*out_os = os;
	*out_st = st;
	return 0;
}

bool cli_is_tty(const struct cli_ctx *ctx)
{
	return !ctx->json && isatty(STDOUT_FILENO);
}

void cli_tags_text(const json_t *tags, struct buf *b)
{
	size_t i;
	json_t *t;

	json_array_foreach(tags, i, t) {
		const char *s = json_string_value(t);
		char q[NAME_SAFE_LEN(NAME_TAG_MAX)];
		if (!s)
			continue;
		if (b->len)
			buf_addc(b, ',');
		buf_adds(b, name_safe(s, q, sizeof(q)));
	}
}

void cli_release_tags_text(const json_t *tags, struct buf *b)
{
	struct buf t;

	buf_init(&t, b->max);
	cli_tags_text(tags, &t);
	if (t.len)
		buf_addf(b, " (%s)", buf_str(&t));
	buf_done(&t);
}
