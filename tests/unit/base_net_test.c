/* Unit tests for base/net.c and base/proc.c: unix sockets with paths longer than sun_path,
 * free loopback ports, bounded TCP connects, process start times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_unix_long_path(void **state)
{
	char *d = fs_mkdtemp("/tmp", NULL), *deep, *sock;
	int lfd, cfd;
	struct stat st;
	(void)state;
	assert_non_null(d);
	deep = xasprintf("%s/%0120d", d, 7); /* far longer than sun_path's 108 bytes */
	assert_int_equal(fs_mkdir_p(deep, 0700, NULL), 0);
	sock = fs_join(deep, "x.sock");
	assert_true(strlen(sock) > 108);
	assert_int_equal(net_unix_listen(sock, 0600, 4, &lfd, NULL), 0);
	assert_int_equal(stat(sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(net_unix_connect(sock, &cfd, NULL), 0);
	close(cfd);
	close(lfd);
	unlink(sock);
	struct err e = { 0 };
	assert_true(net_unix_connect(sock, &cfd, &e) < 0);
	assert_non_null(strstr(e.msg, "cannot connect"));
	fs_rm_rf(d);
	free(d);
	free(deep);
	free(sock);
}

static void test_free_port_and_connect(void **state)
{
	int port = 0;
	struct err e = { 0 };
	(void)state;
	assert_int_equal(net_loopback_free_port(&port, NULL), 0);
	assert_true(port > 0 && port < 65536);
	/* nobody listens there now: refused, quickly */
	assert_true(net_tcp_connect_timeout("127.0.0.1", port, 1000, &e) < 0);
	assert_int_equal(e.code, ECONNREFUSED);
	assert_true(net_tcp_connect_timeout("not-an-ip", port, 1000, &e) < 0);
}

static void test_proc_start_time(void **state)
{
	uint64_t a = 0, b = 0;
	pid_t pid;
	(void)state;
	assert_int_equal(proc_start_time(getpid(), &a), 0);
	assert_true(a > 0);
	assert_true(proc_alive(getpid(), a));
	assert_false(proc_alive(getpid(), a + 1)); /* another start time: another process */
	pid = fork();
	if (pid == 0)
		_exit(0);
	/* a zombie counts as gone */
	for (int i = 0; i < 500 && proc_start_time(pid, &b) == 0; i++)
		usleep(2000);
	assert_int_equal(proc_start_time(pid, &b), -ESRCH);
	waitpid(pid, NULL, 0);
	assert_int_equal(proc_start_time(pid, &b), -ESRCH);
	int fd = proc_pidfd_open(getpid());
	assert_true(fd >= 0);
	close(fd);
}

static void test_exec_spawn(void **state)
{
	const char *ok[] = { "/bin/true", NULL }, *missing[] = { "/nonexistent/prog", NULL };
	struct exec_spawn_opts o = { .fd_in = -1, .fd_out = -1, .fd_err = -1, .fd_3 = -1 };
	struct err e = { 0 };
	pid_t pid = 0;
	int status;
	(void)state;
	assert_int_equal(exec_spawn(ok, &o, &pid, &e), 0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(exec_spawn(missing, &o, &pid, &e), -ENOENT);
	assert_string_equal(e.msg, "cannot run /nonexistent/prog: No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix_long_path),
		cmocka_unit_test(test_free_port_and_connect),
		cmocka_unit_test(test_proc_start_time),
		cmocka_unit_test(test_exec_spawn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
