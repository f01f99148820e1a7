/* bench/proxy/splice-floor: the least a userspace TCP proxy can do — accept one client, connect
 * the upstream, and move the upstream's bytes to the client with blocking splice(2) through a
 * 1 MiB pipe, a thread reading and a thread writing. No event loop, no bookkeeping, one
 * direction: the ceiling any splice-based proxy (cairn's TCP mode included) can reach on this
 * machine, so the table can tell the engine's cost from the kernel's.
 *   splice-floor LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1; serves clients one by one) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)

struct fwd {
	int pipe_r, client, upstream;
};

static void *writer(void *arg)
{
	struct fwd *f = arg;
	while (splice(f->pipe_r, NULL, f->client, NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_MORE) > 0)
		;
	shutdown(f->upstream, SHUT_RDWR); /* the client went away: end the reader too */
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
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16))
		return perror("splice-floor: listen"), 1;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC), u, p[2];
		if (c < 0)
			continue;
		u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(u, (struct sockaddr *)&a, sizeof a) || pipe2(p, O_CLOEXEC)) {
			perror("splice-floor: upstream");
			close(c);
			close(u);
			continue;
		}
		fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);
		struct fwd f = { p[0], c, u };
		pthread_t t;
		pthread_create(&t, NULL, writer, &f);
		while (splice(u, NULL, p[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_MORE) > 0)
			;
		close(p[1]); /* the writer sees EOF once the pipe is empty */
		pthread_join(t, NULL);
		close(p[0]);
		close(u);
		close(c);
	}
}
