/*
 * log.c: key=value log lines on stderr (see log.h). Each line is assembled in one buffer and
 * written with one write(2), so lines from several processes sharing stderr do not interleave.
 */
#include "relay/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

static enum log_level log_min = LOG_LEVEL_INFO;
static char log_proc[24] = "main";

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void log_setup(enum log_level min, const char *proc)
{
	log_min = min;
	snprintf(log_proc, sizeof log_proc, "%s", proc);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

uint64_t log_id_new(void)
{
	uint64_t v = 0;
	if (RAND_bytes((unsigned char *)&v, sizeof v) != 1) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
	}
	return v;
}

int log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

void log_write(enum log_level lvl, uint64_t id, const char *fmt, ...)
{
	if (lvl < log_min)
		return;
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %016llx level=%s proc=%s pid=%ld ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, (long)(tv.tv_usec / 1000), (unsigned long long)id,
	                 level_names[lvl], log_proc, (long)getpid());
	if (n < 0)
		return;
	size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + used, sizeof line - used, fmt, ap);
	va_end(ap);
	if (m > 0)
		used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
	if (used >= sizeof line - 1)
		used = sizeof line - 2;
	line[used++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, used);
	(void)w; /* nowhere to report a failed log write */
}

const char *log_escape(const char *in, size_t inlen, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		size_t need = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? 1 : 4;
		if (o + need + 4 > outlen) { /* keep room for "..." and NUL */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (need == 1) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
