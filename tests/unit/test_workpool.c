/*
 * test_workpool.c: unit tests of relay/workpool.c with a real event loop: jobs run on pool
 * threads (never the loop thread), completions come back on the loop thread, the backlog is
 * a hard bound, and the space callback lets a refused submitter retry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <pthread.h>
#include <unistd.h>

#include "relay/workpool.h"

struct job {
	pthread_t ran_on;
	pthread_t done_on;
	int ran;
	int done;
	useconds_t work_us;
};

static struct event_base *base;
static struct workpool *pool;
static struct job jobs[64];
static int completed;
static int space_calls;

static void job_run(void *arg)
{
	struct job *j = arg;
	j->ran_on = pthread_self();
	j->ran++;
	if (j->work_us)
		usleep(j->work_us);
}

static void job_done(void *arg)
{
	struct job *j = arg;
	j->done_on = pthread_self();
	j->done++;
	if (++completed == 64)
		event_base_loopexit(base, NULL);
}

static void on_space(void *arg)
{
	space_calls++;
	int *next = arg;
	while (*next < 64 && workpool_submit(pool, job_run, job_done, &jobs[*next]) == 0)
		(*next)++;
}

static void test_jobs_run_off_loop_and_complete_on_it(void **state)
{
	base = event_base_new();
	assert_non_null(base);
	pool = workpool_new(base, 3, 8);
	assert_non_null(pool);
	memset(jobs, 0, sizeof jobs);
	completed = space_calls = 0;
	int next = 0;
	workpool_on_space(pool, on_space, &next);
	for (int i = 0; i < 64; i++)
		jobs[i].work_us = 2000;
	while (next < 64 && workpool_submit(pool, job_run, job_done, &jobs[next]) == 0)
		next++;
	if (next != 8)
		fail_msg("backlog 8: got %d jobs admitted, want 8", next);
	assert_int_equal(workpool_pending(pool), 8);
	struct timeval limit = {10, 0};
	event_base_loopexit(base, &limit); /* bounded: the test fails rather than hangs */
	event_base_dispatch(base);
	if (completed != 64)
		fail_msg("got %d completions, want 64", completed);
	assert_true(space_calls > 0);
	pthread_t loop = pthread_self();
	for (int i = 0; i < 64; i++) {
		if (jobs[i].ran != 1 || jobs[i].done != 1)
			fail_msg("job %d: ran %d times and done %d times, want 1 and 1", i,
			         jobs[i].ran, jobs[i].done);
		if (pthread_equal(jobs[i].ran_on, loop))
			fail_msg("job %d ran on the loop thread", i);
		if (!pthread_equal(jobs[i].done_on, loop))
			fail_msg("job %d completed off the loop thread", i);
	}
	assert_int_equal(workpool_pending(pool), 0);
	workpool_free(pool);
	event_base_free(base);
}

static void test_free_runs_queued_jobs(void **state)
{
	base = event_base_new();
	pool = workpool_new(base, 1, 4);
	memset(jobs, 0, sizeof jobs);
	completed = 0;
	for (int i = 0; i < 4; i++)
		assert_int_equal(workpool_submit(pool, job_run, job_done, &jobs[i]), 0);
	assert_int_equal(workpool_submit(pool, job_run, job_done, &jobs[4]), -1);
	workpool_free(pool); /* without running the loop: every job still completes once */
	for (int i = 0; i < 4; i++)
		if (jobs[i].ran != 1 || jobs[i].done != 1)
			fail_msg("job %d: ran %d, done %d, want 1 and 1", i, jobs[i].ran,
			         jobs[i].done);
	assert_int_equal(jobs[4].ran, 0);
	event_base_free(base);
	workpool_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jobs_run_off_loop_and_complete_on_it),
	    cmocka_unit_test(test_free_runs_queued_jobs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
