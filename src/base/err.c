/* err: structured error values for messages a person reads. Owns no heap memory. */
#include "base/base.h"

#include <errno.h>
#include <string.h>

int err_set(struct err *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		memset(e, 0, sizeof(*e));
		e->code = code;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

int err_set_at(struct err *e, int code, const char *file, int line, int col, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		memset(e, 0, sizeof(*e));
		e->code = code;
		e->line = line;
		e->col = col;
		if (file)
			snprintf(e->file, sizeof(e->file), "%s", file);
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
	char pre[ERR_MSG_MAX], old[ERR_MSG_MAX];
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	snprintf(e->msg, sizeof(e->msg), "%s: %s", pre, old);
}

void err_clear(struct err *e)
{
	if (e)
		memset(e, 0, sizeof(*e));
}

void err_print(const struct err *e, FILE *out)
{
	const char *msg = e->msg[0] ? e->msg : strerror(e->code < 1000 ? e->code : EIO);

	if (e->file[0]) {
		name_fput_safe(e->file, out);
		if (e->line > 0)
			fprintf(out, ":%d:%d", e->line, e->col > 0 ? e->col : 1);
		fputs(": error: ", out);
	} else {
		fputs("cairn: error: ", out);
	}
	name_fput_safe(msg, out);
	fputc('\n', out);
}

int err_exit_code(const struct err *e)
{
	return e->code == CAIRN_EINPUT || e->code == CAIRN_EAMBIGUOUS || e->code == CAIRN_ENOTFOUND ||
		       e->code == EINVAL
	       ? 2
	       : 1;
}
