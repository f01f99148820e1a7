/* bench/proxy/bulk: the two ends of one bulk TCP stream for the throughput comparison.
 *   bulk serve BYTES     listens on 127.0.0.1 (port printed), sends BYTES to each client, closes
 *   bulk get HOST PORT   reads until EOF; prints "BYTES SECONDS" */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char block[1 << 18];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof a;
	if (argc == 3 && !strcmp(argv[1], "serve")) {
		long long total = atoll(argv[2]);
		int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16) ||
		    getsockname(l, (struct sockaddr *)&a, &al))
			return perror("bulk: listen"), 1;
		printf("%d\n", ntohs(a.sin_port));
		fflush(stdout);
		for (;;) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				continue;
			for (long long left = total; left > 0;) {
				ssize_t n = send(c, block, left < (long long)sizeof block ? (size_t)left : sizeof block,
						 MSG_NOSIGNAL);
				if (n <= 0)
					break;
				left -= n;
			}
			close(c);
		}
	}
	if (argc == 4 && !strcmp(argv[1], "get")) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_port = htons((unsigned short)atoi(argv[3]));
		inet_pton(AF_INET, argv[2], &a.sin_addr);
		double t0 = now();
		if (connect(s, (struct sockaddr *)&a, sizeof a))
			return perror("bulk: connect"), 1;
		long long got = 0;
		ssize_t n;
		while ((n = read(s, block, sizeof block)) > 0)
			got += n;
		printf("%lld %.6f\n", got, now() - t0);
		return 0;
	}
	fprintf(stderr, "usage: bulk serve BYTES | bulk get HOST PORT\n");
	return 2;
}
