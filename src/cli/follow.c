/* cli follow: `--wait` for deploy and rollback — follows the controller's event stream for one
 * job and shows per-host progress (one redrawn line per host on a terminal, plain lines
 * otherwise). A dropped stream (controller restart) is resumed with Last-Event-ID. */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FOLLOW_LINE_MAX (64 * 1024)
#define FOLLOW_HOSTS_MAX 256

struct follow {
	const struct cli_ctx *ctx;
	int64_t job, last_id;
	bool tty, terminal;
	char final_state[32];
	struct buf line;               /* the line being read */
	char type[16];
	struct buf data;
	char *hosts[FOLLOW_HOSTS_MAX]; /* owned */
	char *status[FOLLOW_HOSTS_MAX]; /* owned */
	int n_hosts, drawn;
};

static void redraw(struct follow *f)
{
	if (f->drawn)
		printf("\033[%dA", f->drawn);
	for (int i = 0; i < f->n_hosts; i++)
	{
		/* step errors carry the app's own words (log lines, crash reasons): escaped */
		printf("\r\033[K  %-16s ", f->hosts[i]);
		name_fput_safe(f->status[i], stdout);
		putchar('\n');
	}
	f->drawn = f->n_hosts;
	fflush(stdout);
}

/* What a finished step found, in a few words: " (2 healthy)", " (3 upstreams, 0.1 ms)", …. */
static void summarise(const char *step, json_t *det, char *out, size_t n)
{
	if (!step || !det)
		return;
	if (!strcmp(step, "health") && json_object_get(det, "healthy"))
		snprintf(out, n, " (%lld healthy)",
			 (long long)json_integer_value(json_object_get(det, "healthy")));
	else if (!strcmp(step, "accept") && json_object_get(det, "checks"))
		snprintf(out, n, " (%lld checks × %lld instances)",
			 (long long)json_integer_value(json_object_get(det, "checks")),
			 (long long)json_integer_value(json_object_get(det, "instances")));
	else if (!strcmp(step, "switch") && json_object_get(det, "upstreams"))
		snprintf(out, n, " (%zu upstreams on %s, %.2f ms)",
			 json_array_size(json_object_get(det, "upstreams")),
			 json_string_value(json_object_get(det, "listen")) ?: "?",
			 (double)json_integer_value(json_object_get(det, "switch_us")) / 1000.0);
	else if (!strcmp(step, "bake") && json_is_string(json_object_get(det, "reason")))
		snprintf(out, n, ": %s", json_string_value(json_object_get(det, "reason")));
	else if (!strcmp(step, "cleanup") && json_object_get(det, "stopped"))
		snprintf(out, n, " (%lld old instances stopped)",
			 (long long)json_integer_value(json_object_get(det, "stopped")));
}

static void on_event(struct follow *f)
{
	json_t *d = json_loads(buf_str(&f->data), 0, NULL);
	if (!d)
		return;
	if (!strcmp(f->type, "step")) {
		const char *host = json_string_value(json_object_get(d, "host"));
		const char *step = json_string_value(json_object_get(d, "step"));
		const char *state = json_string_value(json_object_get(d, "state"));
		json_t *det = json_object_get(d, "detail");
		json_t *err = json_object_get(det, "error");
		char more[256] = "";
		if (!err && state && !strcmp(state, "done"))
			summarise(step, det, more, sizeof(more));
		char *msg = xasprintf("%s %s%s%s%s", step ? step : "?", state ? state : "?",
				      err ? ": " : "", err ? json_string_value(err) : "", more);
		if (f->tty) {
			int i;
			for (i = 0; i < f->n_hosts && strcmp(f->hosts[i], host ? host : ""); i++)
				;
			if (i == f->n_hosts && i < FOLLOW_HOSTS_MAX) {
				f->hosts[i] = xstrdup(host ? host : "");
				f->status[i] = NULL;
				f->n_hosts++;
			}
			if (i < f->n_hosts) {
				free(f->status[i]);
				f->status[i] = msg;
				msg = NULL;
				redraw(f);
			}
		} else if (!f->ctx->json) {
			printf("job %lld: %s: ", (long long)f->job, host ? host : "?");
			name_fput_safe(msg, stdout);
			putchar('\n');
			fflush(stdout);
		}
		free(msg);
	} else if (!strcmp(f->type, "job")) {
		const char *state = json_string_value(json_object_get(d, "state"));
		const char *err = json_string_value(json_object_get(d, "error"));
		const char *unj = json_string_value(json_object_get(d, "unjudged"));
		if (!f->ctx->json && state) {
			printf("job %lld: %s%s", (long long)f->job, state, err ? ": " : "");
			name_fput_safe(err ? err : "", stdout);
			if (!err && unj) {
				fputs(", passed unjudged ", stdout);
				name_fput_safe(unj, stdout);
			}
			putchar('\n');
			f->drawn = 0;
			fflush(stdout);
		}
		if (state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
			      !strcmp(state, "rolled_back") || !strcmp(state, "cancelled"))) {
			f->terminal = true;
			snprintf(f->final_state, sizeof(f->final_state), "%s", state);
		}
	}
	json_decref(d);
}

/* Server-sent events, line by line: "id:", "event:", "data:", blank line dispatches. */
static void on_line(struct follow *f, const char *l)
{
	if (!*l) {
		if (f->data.len)
			on_event(f);
		buf_reset(&f->data);
		f->type[0] = '\0';
		return;
	}
	if (str_starts(l, "id:"))
		f->last_id = atoll(l + 3 + (l[3] == ' '));
	else if (str_starts(l, "event:"))
		snprintf(f->type, sizeof(f->type), "%s", l + 6 + (l[6] == ' '));
	else if (str_starts(l, "data:"))
		buf_adds(&f->data, l + 5 + (l[5] == ' '));
}

static bool on_chunk(void *ctx, const char *p, size_t n)
{
	struct follow *f = ctx;
	for (size_t i = 0; i < n && !f->terminal; i++) {
		if (p[i] == '\n') {
			on_line(f, buf_str(&f->line));
			buf_reset(&f->line);
		} else if (p[i] != '\r') {
			buf_addc(&f->line, p[i]);
		}
	}
	return !f->terminal;
}

int cli_follow_job(struct cli_api *a, const struct cli_ctx *ctx, int64_t job, int64_t wait_ms,
		   char out_state[32], struct err *e)
{
	struct follow f;
	int64_t deadline = time_mono_ns() / 1000000 + wait_ms;
	int r = 0;
	bool said = false;

	memset(&f, 0, sizeof(f));
	f.ctx = ctx;
	f.job = job;
	f.tty = cli_is_tty(ctx);
	buf_init(&f.line, FOLLOW_LINE_MAX);
	buf_init(&f.data, FOLLOW_LINE_MAX);
	while (!f.terminal) {
		char path[96], lei[64];
		snprintf(path, sizeof(path), "/v1/events?job=%lld&after=%lld", (long long)job,
			 (long long)f.last_id);
		snprintf(lei, sizeof(lei), "Last-Event-ID: %lld", (long long)f.last_id);
		const char *hdrs[] = { lei, NULL };
		struct httpc c = a->c;
		c.timeout_ms = deadline - time_mono_ns() / 1000000;
		if (c.timeout_ms <= 0) {
			r = err_set(e, ETIMEDOUT, "job %lld did not finish within the wait (%lld s); it goes "
						  "on: 'cairn deploy --follow %lld' follows it again",
				    (long long)job, (long long)wait_ms / 1000, (long long)job);
			break;
		}
		c.connect_timeout_ms = 2000;
		struct httpc_req rq = { .method = "GET", .path = path, .headers = hdrs,
					.on_chunk = on_chunk, .ctx = &f };
		struct httpc_resp resp;
		buf_init(&resp.body, 1024);
		r = httpc_do(&c, &rq, &resp, e);
		buf_done(&resp.body);
		buf_reset(&f.line);
		if (f.terminal)
			break;
		if (r == 0 && resp.status >= 400) {
			r = err_set(e, CAIRN_ECHECK, "event stream refused: %ld", resp.status);
			break;
		}
		/* the stream ended: the controller restarted or went away; reconnect */
		if (!said && !ctx->json) {
			fprintf(stderr, "cairn: lost the controller's event stream; reconnecting "
					"(from event %lld)\n",
				(long long)f.last_id);
			said = true;
		}
		struct timespec ts = { 0, 200 * 1000000L };
		nanosleep(&ts, NULL);
		r = 0;
	}
	if (f.terminal)
		snprintf(out_state, 32, "%s", f.final_state);
	for (int i = 0; i < f.n_hosts; i++) {
		free(f.hosts[i]);
		free(f.status[i]);
	}
	buf_done(&f.line);
	buf_done(&f.data);
	return f.terminal ? 0 : r;
}
