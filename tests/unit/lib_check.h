/*
 * lib_check.h: the failure-printing checks the table-driven unit tests share
 * (tests/unit/lib_check.c, linked into every unit test binary). A failing check prints
 * "name: field got X, want Y" through cmocka's print_error and is counted; check_done()
 * ends the test with fail_msg when any check failed since the last call, so one test reports
 * every failing case of its table, not only the first. For use inside a running test only.
 */
#ifndef POSTINO_TESTS_LIB_CHECK_H
#define POSTINO_TESTS_LIB_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Printable form of n bytes: printable ASCII as is, every other octet and '\' as \xHH, cut
 * with "..." when too long. The result lives in one of four rotating static buffers, so up to
 * four fit in one call; it is overwritten by the fifth call after. */
const char *check_show(const char *s, size_t n);

/* Prints one failure (a printf format ending in "\n") and counts it. */
void check_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "name: field got "X", want "Y"" unless got and want are the same string. */
void check_str(const char *name, const char *field, const char *got, const char *want);

/* The same for byte strings that may hold NUL, with both lengths in the message. */
void check_bytes(const char *name, const char *field, const char *got, size_t got_len,
                 const char *want, size_t want_len);

void check_u64(const char *name, const char *field, uint64_t got, uint64_t want);
void check_size(const char *name, const char *field, size_t got, size_t want);

/* Reads what a command wrote into the temporary file f (tmpfile()) into buf, at most len - 1
 * bytes, NUL-terminated, and closes f. len must be >= 1. */
void check_capture(FILE *f, char *buf, size_t len);

/* Fails the running test when a check failed since the last call; resets the count. */
void check_done(void);

#endif
