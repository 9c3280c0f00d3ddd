/*
 * log.h: the one logging module. Lines are "level=L id=<16 hex> key=value ..." on stderr
 * (systemd's journal or the terminal collects them). Every line carries an id: a session id,
 * a message id, or 0000000000000000 for the process itself. Never log bodies, passwords,
 * AUTH data, API keys or private keys; escape peer text with log_escape().
 */
#ifndef POSTINO_LOG_H
#define POSTINO_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, LOG_LEVEL_ERROR };

/* Sets the lowest level written (default info) and the process role shown as proc=. */
void log_setup(enum log_level min, const char *proc);
/* Parses "debug"/"info"/"warning"/"error". Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

void log_write(enum log_level lvl, uint64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(id, ...) log_write(LOG_LEVEL_DEBUG, (id), __VA_ARGS__)
#define log_info(id, ...)  log_write(LOG_LEVEL_INFO, (id), __VA_ARGS__)
#define log_warn(id, ...)  log_write(LOG_LEVEL_WARNING, (id), __VA_ARGS__)
#define log_error(id, ...) log_write(LOG_LEVEL_ERROR, (id), __VA_ARGS__)

/* A new random 64-bit id for a session, connection or message (RAND_bytes; a clock and pid
 * mix only if the OS entropy source fails). */
uint64_t log_id_new(void);

/* True when lvl would be written (to skip building costly arguments). */
int log_enabled(enum log_level lvl);

/*
 * Copies untrusted text into out as a quoted-safe token: printable ASCII kept except '"' and
 * '\\', everything else as \xHH; truncated to fit outlen (ends with "..." when cut). Returns
 * out, always NUL-terminated. outlen must be >= 4.
 */
const char *log_escape(const char *in, size_t inlen, char *out, size_t outlen);

#endif
