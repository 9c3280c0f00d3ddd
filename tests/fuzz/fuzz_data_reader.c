/*
 * fuzz_data_reader.c: libFuzzer target for relay/data_reader.c. The first two octets choose
 * max_size and a split point; the rest is fed whole, split in two, and in chunks of 1..7
 * octets. All feedings must agree (output, size, error, header_len, received_count, done,
 * octets consumed), and the output must respect the limits.
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/buf.h"
#include "relay/data_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct data_reader r;
	struct buf out;
	size_t consumed;
	bool done;
};

static void run_feed(const char *in, size_t len, size_t max_size, size_t first, size_t chunk,
                     struct run *run)
{
	size_t pos = 0;
	size_t want = first;

	memset(run, 0, sizeof(*run));
	data_reader_init(&run->r, max_size);
	while (pos < len && !run->done) {
		size_t n = len - pos < want ? len - pos : want;
		size_t c = data_reader_feed(&run->r, in + pos, n, &run->out, &run->done);
		if (c > n || (!run->done && c != n))
			__builtin_trap();
		pos += c;
		want = chunk;
	}
	run->consumed = pos;
}

static void run_same(const struct run *a, const struct run *b)
{
	if (a->out.len != b->out.len ||
	    (a->out.len > 0 && memcmp(a->out.data, b->out.data, a->out.len) != 0))
		__builtin_trap();
	if (a->consumed != b->consumed || a->done != b->done || a->r.size != b->r.size ||
	    a->r.header_len != b->r.header_len || a->r.received_count != b->r.received_count ||
	    a->r.error != b->r.error)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max_size = data[0] == 255 ? SIZE_MAX : (size_t)data[0] * 8;
	size_t split = data[1];
	const char *in = (const char *)data + 2;
	size_t len = size - 2;
	struct run whole, part;

	run_feed(in, len, max_size, SIZE_MAX, SIZE_MAX, &whole);
	if (whole.out.len > max_size || whole.out.len > whole.r.size ||
	    whole.r.header_len > whole.r.size)
		__builtin_trap();
	if (whole.r.error == DATA_ERROR_NONE && whole.out.len != whole.r.size)
		__builtin_trap();
	/* Once done, the last octets consumed are CRLF "." CRLF (or "." CRLF at the start). */
	if (whole.done) {
		if (whole.consumed < 3 || memcmp(in + whole.consumed - 3, ".\r\n", 3) != 0)
			__builtin_trap();
		if (whole.consumed > 3 && memcmp(in + whole.consumed - 5, "\r\n", 2) != 0)
			__builtin_trap();
	}
	for (size_t i = 0; i < whole.out.len; i++) {
		if (whole.out.data[i] == '\0')
			__builtin_trap();
	}

	if (len > 1) {
		run_feed(in, len, max_size, 1 + split % (len - 1), SIZE_MAX, &part);
		run_same(&part, &whole);
		buf_free(&part.out);
	}
	run_feed(in, len, max_size, 1, 1 + split % 7, &part);
	run_same(&part, &whole);
	buf_free(&part.out);
	buf_free(&whole.out);
	return 0;
}
