/* logs: the per-instance log files — the log-writer process (`cairn agent log-writer`), which
 * turns an instance's stdout/stderr pipes into timestamped lines with size rotation and
 * outlives agent restarts, and the reader behind the logs endpoint. Line format:
 * "2026-11-22T04:12:00.123Z stdout text". Files: FILE, FILE.1 … FILE.<keep-1>. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *agent_log_path(const char *state_dir, const char *app, const char *iid)
{
	return xasprintf("%s/logs/%s/%s.log", state_dir, app, iid);
}

int logw_open(struct logw *w, const char *path, uint64_t max_bytes, unsigned keep)
{
	struct stat st;
	w->path = strdup(path);
	if (!w->path)
		return -ENOMEM;
	w->max_bytes = max_bytes;
	w->keep = keep < 1 ? 1 : keep;
	w->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (w->fd < 0) {
		int r = -errno;
		free(w->path);
		w->path = NULL;
		return r;
	}
	w->size = fstat(w->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

static int rotate(struct logw *w)
{
	size_t n = strlen(w->path) + 16;
	char *from = malloc(n), *to = malloc(n);
	int r = 0;
	if (!from || !to) {
		free(from);
		free(to);
		return -ENOMEM;
	}
	close(w->fd);
	if (w->keep == 1) {
		unlink(w->path);
	} else {
		/* FILE.(keep-2) → FILE.(keep-1), …, FILE → FILE.1; the oldest is overwritten */
		for (unsigned i = w->keep - 1; i >= 1; i--) {
			if (i == 1)
				snprintf(from, n, "%s", w->path);
			else
				snprintf(from, n, "%s.%u", w->path, i - 1);
			snprintf(to, n, "%s.%u", w->path, i);
			if (rename(from, to) < 0 && errno != ENOENT)
				r = -errno;
		}
	}
	w->fd = open(w->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (w->fd < 0)
		r = -errno;
	w->size = 0;
	free(from);
	free(to);
	return r;
}

int logw_line(struct logw *w, int64_t now_ns, const char *stream, const char *line, size_t n)
{
	char ts[32], head[64];
	time_t s = (time_t)(now_ns / 1000000000);
	struct tm tm;
	size_t hn;
	int r;

	gmtime_r(&s, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	hn = (size_t)snprintf(head, sizeof(head), "%s.%03dZ %s ", ts,
			      (int)(now_ns / 1000000 % 1000), stream);
	if (n > LOG_LINE_MAX)
		n = LOG_LINE_MAX;
	if (w->size > 0 && w->size + hn + n + 1 > w->max_bytes && (r = rotate(w)) < 0 && w->fd < 0)
		return r;
	/* one write per line: readers never see half a line from us */
	char *rec = malloc(hn + n + 1);
	if (!rec)
		return -ENOMEM;
	memcpy(rec, head, hn);
	memcpy(rec + hn, line, n);
	rec[hn + n] = '\n';
	r = fs_write_all(w->fd, rec, hn + n + 1);
	free(rec);
	if (r == 0)
		w->size += hn + n + 1;
	return r;
}

void logw_close(struct logw *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	free(w->path);
	w->path = NULL;
}

/* One input stream of the log writer: a pipe and its partial line. */
struct lw_stream {
	int fd;
	const char *name;
	char *pending; /* owned, LOG_LINE_MAX bytes */
	size_t n;
};

static void lw_feed(struct logw *w, struct lw_stream *s, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		size_t room = LOG_LINE_MAX - s->n;
		if (take > room)
			take = room;
		memcpy(s->pending + s->n, p, take);
		s->n += take;
		p += take;
		n -= take;
		if (s->n == LOG_LINE_MAX || (n && *p == '\n')) {
			size_t len = s->n;
			if (len && s->pending[len - 1] == '\r')
				len--;
			logw_line(w, time_now_ns(), s->name, s->pending, len);
			s->n = 0;
			if (n && *p == '\n') {
				p++;
				n--;
			}
		}
	}
}

int agent_log_writer_main(int argc, char **argv)
{
	struct lw_stream st[2] = {{0, "stdout", NULL, 0}, {3, "stderr", NULL, 0}};
	struct logw w = {.fd = -1};
	uint64_t max_bytes = LOG_ROTATE_BYTES;
	unsigned keep = LOG_KEEP;
	const char *file = NULL;
	char chunk[8192];
	int open_streams = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc)
			max_bytes = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--keep") && i + 1 < argc)
			keep = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else if (strcmp(argv[i], "log-writer") != 0) {
			fprintf(stderr, "cairn agent log-writer: error: unexpected argument '%s'\n",
				argv[i]);
			return 2;
		}
	}
	if (!file || max_bytes < 1024) {
		fputs(
		    "usage: cairn agent log-writer [--max-bytes N] [--keep K] FILE (fd 0: stdout, "
		    "fd 3: stderr)\n",
		    stderr);
		return 2;
	}
	/* the instance's stop signal goes to its own group; a terminal's must not reach us */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (logw_open(&w, file, max_bytes, keep) < 0) {
		fprintf(stderr, "cairn agent log-writer: error: cannot open %s: %s\n", file,
			strerror(errno));
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		st[i].pending = xmalloc(LOG_LINE_MAX);
		if (fcntl(st[i].fd, F_GETFD) < 0) {
			st[i].fd = -1;
			open_streams--;
		}
	}
	while (open_streams > 0) {
		struct pollfd pfd[2];
		for (int i = 0; i < 2; i++)
			pfd[i] = (struct pollfd){st[i].fd, POLLIN, 0};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (st[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(st[i].fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (st[i].n) /* the last line had no newline */
					logw_line(&w, time_now_ns(), st[i].name, st[i].pending,
						  st[i].n);
				st[i].n = 0;
				close(st[i].fd);
				st[i].fd = -1;
				open_streams--;
				continue;
			}
			lw_feed(&w, &st[i], chunk, (size_t)n);
		}
	}
	for (int i = 0; i < 2; i++)
		free(st[i].pending);
	logw_close(&w);
	return 0;
}

/* Appends the lines of one file to arr (bounded: the last max_bytes of it). */
static int read_lines(const char *path, size_t max_bytes, json_t *arr)
{
	struct buf b;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size > max_bytes)
		lseek(fd, st.st_size - (off_t)max_bytes, SEEK_SET);
	buf_init(&b, max_bytes + 1);
	int r = fs_read_fd(fd, &b);
	close(fd);
	if (r < 0 && r != -E2BIG) {
		buf_done(&b);
		return r;
	}
	const char *p = buf_str(&b), *end = p + b.len;
	if ((size_t)st.st_size > max_bytes) { /* skip the cut first line */
		const char *nl = memchr(p, '\n', b.len);
		p = nl ? nl + 1 : end;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *sp1 = memchr(p, ' ', (size_t)(le - p));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
		if (sp1 && sp2) {
			json_t *o = json_object();
			json_object_set_new(o, "ts", json_stringn(p, (size_t)(sp1 - p)));
			json_object_set_new(o, "stream",
					    json_stringn(sp1 + 1, (size_t)(sp2 - sp1 - 1)));
			json_t *line = json_stringn(sp2 + 1, (size_t)(le - sp2 - 1));
			if (!line) /* not UTF-8: keep the line, lose the bad bytes */
				line = json_string("(line is not valid UTF-8)");
			json_object_set_new(o, "line", line);
			json_array_append_new(arr, o);
		}
		p = nl ? nl + 1 : end;
	}
	buf_done(&b);
	return 0;
}

int agent_log_tail(const char *path, size_t tail, json_t **out, struct err *e)
{
	return agent_log_tail_window(path, tail, 4u * 1024 * 1024, out, e);
}

int agent_log_tail_window(const char *path, size_t tail, size_t window, json_t **out,
			  struct err *e)
{
	json_t *all = json_array(), *res;
	char *older = xasprintf("%s.1", path);
	int r = read_lines(path, window, all);

	if (r == 0 && json_array_size(all) < tail) {
		json_t *prev = json_array();
		r = read_lines(older, window, prev);
		json_array_extend(prev, all);
		json_decref(all);
		all = prev;
	}
	free(older);
	if (r < 0) {
		json_decref(all);
		return err_set(e, -r, "cannot read %s: %s", path, strerror(-r));
	}
	size_t n = json_array_size(all), from = n > tail ? n - tail : 0;
	res = json_array();
	for (size_t i = from; i < n; i++)
		json_array_append(res, json_array_get(all, i));
	json_decref(all);
	*out = res;
	return 0;
}
