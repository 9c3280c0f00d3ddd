/*
 * internal.h: helpers shared by the files of queue/ only (not part of its API).
 */
#ifndef POSTINO_QUEUE_INTERNAL_H
#define POSTINO_QUEUE_INTERNAL_H

#include <stddef.h>

/* Formats a reason into err (no-op when err is NULL or errlen is 0). */
void queue_error_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
