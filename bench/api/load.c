/* bench/api/load: a small closed-loop HTTP/1.1 load generator over a unix socket. T threads,
 * each with one keep-alive connection, send the same request back to back for D seconds and
 * read each answer (Content-Length bodies). Prints "requests errors seconds" on stdout.
 *   load SOCKET DURATION_S THREADS METHOD PATH [BODY [HEADER]] */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;
static char req[8192];
static size_t req_len;
static double duration;

struct res {
	long n, errors;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Reads one answer; returns its status or -1. */
static int read_answer(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	for (;;) {
		ssize_t k = read(fd, buf + len, cap - 1 - len);
		if (k <= 0)
			return -1;
		len += (size_t)k;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "\r\nContent-Length:");
		size_t body = cl && cl < end ? (size_t)atol(cl + 17) : 0;
		size_t want = (size_t)(end + 4 - buf) + body;
		if (want >= cap)
			return -1;
		while (len < want) {
			k = read(fd, buf + len, want - len);
			if (k <= 0)
				return -1;
			len += (size_t)k;
		}
		return atoi(buf + 9);
	}
}

static void *worker(void *arg)
{
	struct res *r = arg;
	static __thread char buf[1 << 20];
	int fd = dial();
	double end = now() + duration;
	while (now() < end) {
		if (fd < 0 && (fd = dial()) < 0) {
			r->errors++;
			continue;
		}
		if (write(fd, req, req_len) != (ssize_t)req_len) {
			close(fd);
			fd = -1;
			r->errors++;
			continue;
		}
		int st = read_answer(fd, buf, sizeof(buf));
		if (st < 200 || st > 299) {
			r->errors++;
			close(fd);
			fd = -1;
			continue;
		}
		r->n++;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: load SOCKET DURATION_S THREADS METHOD PATH [BODY [HEADER]]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sock_path = argv[1];
	duration = atof(argv[2]);
	int threads = atoi(argv[3]);
	const char *body = argc > 6 ? argv[6] : "";
	const char *hdr = argc > 7 ? argv[7] : NULL;
	req_len = (size_t)snprintf(req, sizeof(req),
				   "%s %s HTTP/1.1\r\nHost: bench\r\n%s%sContent-Type: application/json\r\n"
				   "Content-Length: %zu\r\n\r\n%s",
				   argv[4], argv[5], hdr ? hdr : "", hdr ? "\r\n" : "", strlen(body), body);
	pthread_t th[256];
	struct res rs[256];
	if (threads < 1 || threads > 256)
		return 2;
	memset(rs, 0, sizeof(rs));
	double t0 = now();
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, worker, &rs[i]);
	long n = 0, errors = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		n += rs[i].n;
		errors += rs[i].errors;
	}
	printf("%ld %ld %.3f\n", n, errors, now() - t0);
	return 0;
}
