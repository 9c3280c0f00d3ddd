/*
 * test_connlimit.c: unit tests of relay/connlimit.c: total and per-IP limits summed over
 * worker rows, release, IPv4-mapped IPv6 counted as IPv4, a dead worker's row reset, and the
 * table shared across fork().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/connlimit.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
	}
	return ss;
}

#define SA(x) ((struct sockaddr *)&(x))

static void test_limits(void **state)
{
	struct connlimit *c = connlimit_new(2);
	assert_non_null(c);
	struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2"),
	                        mapped = addr("::ffff:192.0.2.1");
	/* per IP: 2, spread over both workers */
	assert_int_equal(connlimit_acquire(c, 0, SA(a), 100, 2), 0);
	assert_int_equal(connlimit_acquire(c, 1, SA(a), 100, 2), 0);
	assert_int_equal(connlimit_acquire(c, 1, SA(a), 100, 2), -1);
	assert_int_equal(connlimit_acquire(c, 0, SA(mapped), 100, 2), -1); /* same IP */
	assert_int_equal(connlimit_acquire(c, 0, SA(b), 100, 2), 0);
	assert_int_equal(connlimit_total(c), 3);
	/* total: 3 */
	assert_int_equal(connlimit_acquire(c, 1, SA(b), 3, 10), -1);
	connlimit_release(c, 1, SA(a));
	assert_int_equal(connlimit_total(c), 2);
	assert_int_equal(connlimit_acquire(c, 1, SA(a), 100, 2), 0);
	/* worker 1 dies: its row goes, worker 0's stays */
	connlimit_reset_worker(c, 1);
	assert_int_equal(connlimit_total(c), 2);
	assert_int_equal(connlimit_acquire(c, 1, SA(a), 100, 2), 0);
	assert_int_equal(connlimit_acquire(c, 1, SA(a), 100, 2), -1);
	connlimit_free(c);
	connlimit_free(NULL);
}

static void test_shared_across_fork(void **state)
{
	struct connlimit *c = connlimit_new(2);
	struct sockaddr_storage a = addr("2001:db8::1");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(connlimit_acquire(c, 1, SA(a), 10, 1) == 0 ? 0 : 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (connlimit_total(c) != 1)
		fail_msg("after the child's acquire: got total %d, want 1", connlimit_total(c));
	assert_int_equal(connlimit_acquire(c, 0, SA(a), 10, 1), -1);
	connlimit_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_shared_across_fork),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
