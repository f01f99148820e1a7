/* Unit tests for controller/hosts.c (included to reach its statics): remote-shell quoting,
 * which calls may be repeated after a lost answer, the registry learning hosts from a plan,
 * and an unreachable host's error (a real ssh to a closed port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/controller/hosts.c"

#include "config/config.h"

static void test_sh_quote(void **state)
{
	(void)state;
	char *q = sh_quote("/usr/bin/cairn");
	assert_string_equal(q, "'/usr/bin/cairn'");
	free(q);
	q = sh_quote("a'b; rm -rf /");
	assert_string_equal(q, "'a'\\''b; rm -rf /'");
	free(q);
	q = sh_quote("");
	assert_string_equal(q, "''");
	free(q);
}

static void test_repeatable(void **state)
{
	(void)state;
	assert_true(hosts_repeatable("GET", "/v1/apps/a/instances"));
	assert_true(hosts_repeatable("POST", "/v1/apps/a/instances/i-1/probe"));
	assert_true(hosts_repeatable("POST", "/v1/objects/missing"));
	assert_true(hosts_repeatable("PUT", "/v1/objects/ab"));
	assert_true(hosts_repeatable("POST", "/v1/releases/sha256:x/activate"));
	assert_false(hosts_repeatable("POST", "/v1/apps/a/instances"));
	assert_false(hosts_repeatable("DELETE", "/v1/apps/a/instances/i-1"));
}

static struct config *plan(const char *hosts)
{
	char *text = xasprintf("app: x\nrun:\n  command: [a]\nlisten: 1\nhosts: %s\n", hosts);
	struct config *c = NULL;
	struct err e = {0};
	assert_int_equal(config_parse("cairn.yml", NULL, text, strlen(text), &c, &e), 0);
	free(text);
	return c;
}

static void test_unreachable_host(void **state)
{
	char dir[64];
	struct err e = {0};
	char *sock = NULL, *cfgf;
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/cairn-hosts-test-%d", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	/* port 1 on loopback: nobody listens, ssh fails at once */
	cfgf = xasprintf("%s/ssh_config", dir);
	assert_int_equal(fs_write_atomic(cfgf, "Port 1\n", 7, 0600, NULL), 0);
	setenv("CAIRN_SSH_CONFIG", cfgf, 1);
	assert_int_equal(hosts_init(dir, &e), 0);

	assert_true(hosts_socket("web1", &sock, &e) < 0);
	assert_int_equal(e.code, CAIRN_ENOTFOUND);

	struct config *c = plan("[local, {name: web1, ssh: root@127.0.0.1, state: /srv/c}]");
	hosts_learn(c);
	hosts_learn(c); /* twice: one entry, unchanged */
	assert_non_null(find("web1"));
	assert_null(find("local"));
	assert_string_equal(find("web1")->rstate, "/srv/c");
	memset(&e, 0, sizeof(e));
	assert_true(hosts_socket("web1", &sock, &e) < 0);
	assert_null(sock);
	assert_int_equal(e.code, CAIRN_ECHECK);
	assert_non_null(strstr(e.msg, "host web1: cannot reach it over SSH (root@127.0.0.1)"));
	assert_non_null(strstr(e.msg, "check that sshd runs there"));
	assert_non_null(strstr(e.msg, cfgf));
	assert_int_equal(find("web1")->pid, 0); /* nothing left running */

	/* the plan moved the host: the registry follows */
	config_free(c);
	c = plan("[{name: web1, ssh: deploy@127.0.0.1}]");
	hosts_learn(c);
	assert_string_equal(find("web1")->ssh, "deploy@127.0.0.1");
	assert_string_equal(find("web1")->rstate, CONFIG_REMOTE_STATE);
	config_free(c);

	/* a call through it says the same, having tried to repair once */
	memset(&e, 0, sizeof(e));
	assert_true(hosts_call("web1", "GET", "/v1/agent", NULL, NULL, 0, 1000, NULL, &e) < 0);
	assert_non_null(strstr(e.msg, "host web1: cannot reach it over SSH"));
	hosts_shutdown();
	unsetenv("CAIRN_SSH_CONFIG");
	char *cmd = xasprintf("rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(cfgf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sh_quote),
	    cmocka_unit_test(test_repeatable),
	    cmocka_unit_test(test_unreachable_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
