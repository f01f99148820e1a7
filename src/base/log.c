/* log: leveled messages to stderr, "level module: message". Level from CAIRN_LOG. */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static int current_level(void)
{
	static int lvl = -1;
	if (lvl < 0) {
		const char *s = getenv("CAIRN_LOG");
		lvl = LOG_WARN;
		if (s && !strcmp(s, "debug"))
			lvl = LOG_DEBUG;
		else if (s && !strcmp(s, "info"))
			lvl = LOG_INFO;
		else if (s && !strcmp(s, "error"))
			lvl = LOG_ERROR;
	}
	return lvl;
}

void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	va_list ap;
	if ((int)lvl < current_level())
		return;
	fprintf(stderr, "%s %s: ", names[lvl], module);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
