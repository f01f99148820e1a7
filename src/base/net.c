/* net: unix-socket and loopback TCP helpers — listening and connecting on unix sockets whose
 * path may be longer than sun_path, picking a free loopback port, a bounded TCP connect.
 * Blocking calls only where documented; nothing here knows HTTP. */
#include "base/base.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int net_unix_addr(const char *path, struct sockaddr_un *out, int *out_dirfd, struct err *e)
{
	size_t n = strlen(path);
	memset(out, 0, sizeof(*out));
	out->sun_family = AF_UNIX;
	*out_dirfd = -1;
	if (n < sizeof(out->sun_path)) {
		memcpy(out->sun_path, path, n + 1);
		return 0;
	}
	/* Too long for sun_path: reach the directory through /proc/self/fd/N. */
	const char *slash = strrchr(path, '/');
	if (!slash || strlen(slash + 1) + 32 >= sizeof(out->sun_path))
		return err_set(e, ENAMETOOLONG, "socket path %s is too long", path);
	char *dir = xstrndup(path, (size_t)(slash - path) + (slash == path));
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (dfd < 0)
		return err_set(e, errno, "cannot open the directory of %s: %s", path,
			       strerror(errno));
	snprintf(out->sun_path, sizeof(out->sun_path), "/proc/self/fd/%d/%s", dfd, slash + 1);
	*out_dirfd = dfd;
	return 0;
}

int net_unix_listen(const char *path, mode_t mode, int backlog, int *out_fd, struct err *e)
{
	struct sockaddr_un sa;
	int dfd, fd, r = 0;
	mode_t old;

	if ((r = net_unix_addr(path, &sa, &dfd, e)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = err_set(e, errno, "socket: %s", strerror(errno));
		goto done;
	}
	/* the mode is right from the first moment: no window where others may connect */
	old = umask(0777 & ~mode);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = err_set(e, errno, "cannot bind %s: %s", path, strerror(errno));
		umask(old);
		close(fd);
		goto done;
	}
	umask(old);
	chmod(path, mode);
	if (listen(fd, backlog) < 0) {
		r = err_set(e, errno, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		goto done;
	}
	*out_fd = fd;
done:
	if (dfd >= 0)
		close(dfd);
	return r;
}

int net_unix_connect(const char *path, int *out_fd, struct err *e)
{
	struct sockaddr_un sa;
	int dfd, fd, r;

	if ((r = net_unix_addr(path, &sa, &dfd, e)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = err_set(e, errno, "socket: %s", strerror(errno));
	} else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = err_set(e, errno, "cannot connect to %s: %s", path, strerror(errno));
		close(fd);
	} else {
		*out_fd = fd;
	}
	if (dfd >= 0)
		close(dfd);
	return r;
}

int net_loopback_free_port(int *out_port, struct err *e)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return err_set(e, errno, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		r = err_set(e, errno, "cannot find a free loopback port: %s", strerror(errno));
	else
		*out_port = ntohs(sa.sin_port);
	close(fd);
	return r;
}

int net_loopback_free_port_avoiding(bool (*avoid)(void *ctx, int port), void *ctx, int *out_port,
				    struct err *e)
{
	/* a port we refuse stays bound until the search ends, so the kernel hands out another */
	int held[64], n = 0, r = 0;

	for (;;) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = err_set(e, errno, "socket: %s", strerror(errno));
			break;
		}
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
			r = errno == EADDRINUSE
				? err_set(e, errno,
					  "no free loopback port: every port of "
					  "net.ipv4.ip_local_port_range is in use or reserved")
				: err_set(e, errno, "cannot find a free loopback port: %s",
					  strerror(errno));
			close(fd);
			break;
		}
		int port = ntohs(sa.sin_port);
		if (!avoid || !avoid(ctx, port)) {
			close(fd);
			*out_port = port;
			break;
		}
		if (n == (int)(sizeof(held) / sizeof(held[0]))) {
			close(fd);
			r = err_set(e, EADDRINUSE,
				    "no free loopback port after %d tries: the ones offered are "
				    "reserved",
				    n + 1);
			break;
		}
		held[n++] = fd;
	}
	while (n > 0)
		close(held[--n]);
	return r;
}

int net_tcp_connect_timeout(const char *ipv4, int port, int64_t timeout_ms, struct err *e)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, r = 0, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (inet_pton(AF_INET, ipv4, &sa.sin_addr) != 1)
		return err_set(e, EINVAL, "'%s' is not an IPv4 address", ipv4);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_set(e, errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		goto done;
	if (errno != EINPROGRESS) {
		r = err_set(e, errno, "connect to %s:%d: %s", ipv4, port, strerror(errno));
		goto done;
	}
	struct pollfd pfd = {fd, POLLOUT, 0};
	int64_t deadline = time_mono_ns() + timeout_ms * 1000000;
	for (;;) {
		int64_t left = (deadline - time_mono_ns()) / 1000000;
		int pr = poll(&pfd, 1, left < 0 ? 0 : (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			r = err_set(e, ETIMEDOUT, "connect to %s:%d: no answer within %lldms", ipv4,
				    port, (long long)timeout_ms);
			goto done;
		}
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr)
		r = err_set(e, soerr, "connect to %s:%d: %s", ipv4, port, strerror(soerr));
done:
	close(fd);
	return r;
}
