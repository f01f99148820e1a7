/* Unit tests for base/: buffers, durations, hashing, exec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void test_buf_bounded(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_adds(&b, "12345678"), 0);
	assert_int_equal(buf_adds(&b, "9"), -E2BIG);
	assert_string_equal(buf_str(&b), "12345678");
	buf_reset(&b);
	assert_int_equal(buf_addf(&b, "%d-%s", 42, "x"), 0);
	assert_string_equal(buf_str(&b), "42-x");
	/* a failure sticks: later appends that would fit fail too, until a reset */
	assert_int_equal(buf_adds(&b, "toolong"), -E2BIG);
	assert_int_equal(buf_adds(&b, "y"), -E2BIG);
	assert_int_equal(b.err, -E2BIG);
	assert_string_equal(buf_str(&b), "42-x");
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "y"), 0);
	buf_done(&b);
}

static void test_duration(void **state)
{
	int64_t ms;
	(void)state;
	assert_int_equal(time_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(time_parse_duration_ms("10s", &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(time_parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(time_parse_duration_ms("1m30s", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(time_parse_duration_ms("1.5s", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(time_parse_duration_ms("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(time_parse_duration_ms("10", &ms), -EINVAL);
	assert_int_equal(time_parse_duration_ms("10x", &ms), -EINVAL);
	assert_int_equal(time_parse_duration_ms("-1s", &ms), -EINVAL);
	assert_int_equal(time_parse_duration_ms("", &ms), -EINVAL);
	assert_int_equal(time_parse_duration_ms("s", &ms), -EINVAL);
}

static void test_hash(void **state)
{
	char hex[HASH_HEX_LEN + 1];
	(void)state;
	hash_mem("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(hash_is_hex(hex, HASH_HEX_LEN));
	assert_false(hash_is_hex("abZ", 3));
}

static void test_exec(void **state)
{
	struct buf out;
	struct err e;
	int status = -1;
	const char *argv_ok[] = { "sh", "-c", "echo hi; exit 3", NULL };
	const char *argv_missing[] = { "cairn-no-such-program", NULL };
	struct exec_opts o = { .out = &out };
	(void)state;
	buf_init(&out, 1024);
	assert_int_equal(exec_run(argv_ok, &o, &status, &e), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);
	assert_string_equal(buf_str(&out), "hi\n");
	assert_int_equal(exec_run(argv_missing, NULL, &status, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "cairn-no-such-program"));
	buf_done(&out);
}

static void test_exec_timeout(void **state)
{
	struct err e;
	int status;
	const char *argv[] = { "sleep", "5", NULL };
	struct exec_opts o = { .timeout_ms = 100 };
	(void)state;
	assert_int_equal(exec_run(argv, &o, &status, &e), -ETIMEDOUT);
}

static void test_err_print_escapes_control_chars(void **state)
{
	struct err e;
	char out[256] = "";
	FILE *f = fmemopen(out, sizeof(out), "w");
	(void)state;
	err_set_at(&e, CAIRN_EINPUT, "a\033[2Jb.yml", 3, 7, "bad \"x\ry\"");
	err_print(&e, f);
	fclose(f);
	assert_string_equal(out, "a\\x1b[2Jb.yml:3:7: error: bad \"x\\x0dy\"\n");
}

static void test_run_user_shape(void **state)
{
	(void)state;
	assert_true(proc_run_user_ok("www-data"));
	assert_true(proc_run_user_ok("_app.1"));
	assert_true(proc_run_user_ok("65534"));
	assert_true(proc_run_user_ok("2147483647"));
	static const char *const bad[] = {"", "root", "0", "00", "012", "2147483648",
					  "99999999999", "-1", "Www", "a;b", "a b", "../x",
					  "a/b", "-oops", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(proc_run_user_ok(bad[i]));
	assert_false(proc_run_user_ok(NULL));
}

static void test_edit_distance(void **state)
{
	(void)state;
	assert_int_equal(str_edit_distance("listen", "lsiten", 5), 2);
	assert_int_equal(str_edit_distance("instances", "instance", 5), 1);
	assert_int_equal(str_edit_distance("a", "zzzzzzz", 3), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_bounded),  cmocka_unit_test(test_duration),
		cmocka_unit_test(test_hash),         cmocka_unit_test(test_exec),
		cmocka_unit_test(test_exec_timeout), cmocka_unit_test(test_edit_distance),
		cmocka_unit_test(test_err_print_escapes_control_chars),
		cmocka_unit_test(test_run_user_shape),
	};
	return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
