/*
 * buf.h: a growable byte buffer, the one owned-bytes type shared by relay/, dkim/ and queue/.
 *
 * Ownership: a struct buf owns data; buf_free() releases it and leaves an empty buffer.
 * buf_free() on an empty buffer is a no-op. Growth is bounded by the caller: every append
 * that would take the buffer past BUF_HARD_MAX fails instead of allocating.
 */
#ifndef POSTINO_BUF_H
#define POSTINO_BUF_H

#include <stddef.h>

/* No single buffer may exceed this (1 GiB); the largest legal message is far below it. */
#define BUF_HARD_MAX ((size_t)1 << 30)

struct buf {
	char *data; /* NUL-terminated when len > 0 or after any append; may be NULL when empty */
	size_t len;
	size_t cap;
};

#define BUF_INIT                                                                                   \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

/* Makes room for at least `extra` more bytes. Returns 0, or -1 (allocation failed or too big). */
int buf_reserve(struct buf *b, size_t extra);
/* Appends len bytes. Returns 0 or -1; on -1 the buffer is unchanged. */
int buf_append(struct buf *b, const void *data, size_t len);
/* Appends a NUL-terminated string. */
int buf_append_str(struct buf *b, const char *s);
/* Appends printf-style formatted text. Returns 0 or -1. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer and keeps its memory. */
void buf_reset(struct buf *b);
/* Releases the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
