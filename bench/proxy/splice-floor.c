/* bench/proxy/splice-floor: the least a userspace TCP proxy can do — accept a client, connect
 * the upstream, and move bytes each way with blocking splice(2) through a 1 MiB pipe, one
 * thread filling and one draining each pipe (polls, then splices what is there). No event loop, no bookkeeping, no limits: the
 * ceiling any splice-based proxy (cairn's TCP mode and fault proxy included) can reach on this
 * machine, so a table can tell the engine's cost from the kernel's. A thread per connection
 * and direction: a reference for throughput, not a design.
 *   splice-floor LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1; 0: any, printed) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)

static struct sockaddr_in upstream;

struct pump {
	int src, dst, pipe[2];
	pthread_t writer;
};

/* Splices exactly what the pipe holds: with a longer length the kernel sends with MSG_MORE
 * (more is coming), which corks the socket, and a one-byte ping would wait for more forever. */
static void *drain(void *arg)
{
	struct pump *p = arg;
	for (;;) {
		struct pollfd pf = { .fd = p->pipe[0], .events = POLLIN };
		int n = 0;
		if (poll(&pf, 1, -1) < 0 || ioctl(p->pipe[0], FIONREAD, &n) < 0 || n <= 0)
			break; /* n == 0 after POLLHUP: the filler closed its end and all is sent */
		if (splice(p->pipe[0], NULL, p->dst, NULL, (size_t)n, SPLICE_F_MOVE) <= 0)
			break;
	}
	shutdown(p->dst, SHUT_WR);
	shutdown(p->src, SHUT_RD); /* the far side went away: stop filling too */
	return NULL;
}

/* A blocking splice from a socket holds the pipe's lock while it waits for data, which would
 * stall the drain of what is already in the pipe: wait in poll, splice without blocking. */
static void *fill(void *arg)
{
	struct pump *p = arg;
	for (;;) {
		struct pollfd pf = { .fd = p->src, .events = POLLIN };
		if (poll(&pf, 1, -1) < 0)
			break;
		ssize_t n = splice(p->src, NULL, p->pipe[1], NULL, PIPE_BYTES,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		if (n < 0) { /* data is there, so the pipe is full: wait for room */
			struct pollfd pw = { .fd = p->pipe[1], .events = POLLOUT };
			if (poll(&pw, 1, -1) < 0)
				break;
		}
	}
	close(p->pipe[1]); /* the drain sees EOF once the pipe is empty */
	pthread_join(p->writer, NULL);
	close(p->pipe[0]);
	return NULL;
}

static int pump_start(struct pump *p, pthread_t *t)
{
	if (pipe2(p->pipe, O_CLOEXEC))
		return -1;
	fcntl(p->pipe[1], F_SETPIPE_SZ, PIPE_BYTES);
	if (pthread_create(&p->writer, NULL, drain, p))
		return -1;
	return pthread_create(t, NULL, fill, p);
}

static void *conn(void *arg)
{
	int c = (int)(intptr_t)arg, u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct pump down = { .src = u, .dst = c }, up = { .src = c, .dst = u };
	pthread_t td, tu;
	if (connect(u, (struct sockaddr *)&upstream, sizeof upstream) == 0 &&
	    pump_start(&down, &td) == 0) {
		if (pump_start(&up, &tu) == 0)
			pthread_join(tu, NULL);
		pthread_join(td, NULL);
	}
	close(u);
	close(c);
	return NULL;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc != 3) {
		fprintf(stderr, "usage: splice-floor LISTEN_PORT UPSTREAM_PORT\n");
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
	socklen_t al = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	upstream = a;
	upstream.sin_port = htons((unsigned short)atoi(argv[2]));
	int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 512) ||
	    getsockname(l, (struct sockaddr *)&a, &al))
		return perror("splice-floor: listen"), 1;
	printf("ready %d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;
		if (c < 0)
			continue;
		if (pthread_create(&t, NULL, conn, (void *)(intptr_t)c)) {
			close(c);
			continue;
		}
		pthread_detach(t);
	}
}
