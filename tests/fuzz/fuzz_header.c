/*
 * fuzz_header.c: libFuzzer target for relay/header.c. Iterates the header fields of the
 * input, parses each value and the whole input as address lists, and traps when an output
 * breaks its contract (fields tile the header section, counts within max, NUL-terminated
 * addresses whose domain is the lowercased tail).
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void addresses_check(const char *value, size_t len, size_t max)
{
	struct header_address out[4];
	size_t count = 12345;
	enum header_addr_status st = header_addresses_parse(value, len, out, max, &count);

	if (st == HEADER_ADDR_SYNTAX)
		return;
	if (count > max || (st == HEADER_ADDR_TOO_MANY && count != max))
		__builtin_trap();
	for (size_t i = 0; i < count; i++) {
		size_t n = strnlen(out[i].addr, sizeof(out[i].addr));
		size_t d = strnlen(out[i].domain_lower, sizeof(out[i].domain_lower));
		if (n > SMTP_PATH_MAX - 2 || out[i].local_len == 0 ||
		    out[i].local_len > SMTP_LOCAL_MAX || d == 0 || out[i].local_len + 1 + d != n ||
		    out[i].addr[out[i].local_len] != '@')
			__builtin_trap();
		for (size_t k = 0; k < d; k++) {
			char c = out[i].addr[out[i].local_len + 1 + k];
			char lower = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
			if (out[i].domain_lower[k] != lower)
				__builtin_trap();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct header_iter it;
	struct header_field f;
	enum header_status st;
	size_t expected = 0;

	header_iter_init(&it, msg, size);
	while ((st = header_next(&it, &f)) == HEADER_FIELD) {
		if (f.offset != expected || f.length < f.name_len + 3 ||
		    f.offset + f.length > size || f.name != msg + f.offset ||
		    f.value != f.name + f.name_len + 1 ||
		    f.value + f.value_len + 2 != msg + f.offset + f.length)
			__builtin_trap();
		expected = f.offset + f.length;
		addresses_check(f.value, f.value_len, 4);
	}
	if (st == HEADER_END) {
		size_t body = header_body_offset(&it);
		if (body > size || body < expected)
			__builtin_trap();
	}
	addresses_check(msg, size, size % 5);
	return 0;
}
