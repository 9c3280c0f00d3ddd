/*
 * connlimit.c: shared connection counters (see connlimit.h). C11 atomics on a MAP_SHARED
 * anonymous mapping, one row per worker; no locks.
 */
#include "relay/connlimit.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "relay/log.h"

#define CONNLIMIT_SLOTS 16384

struct connlimit_row {
	atomic_int total;
	atomic_int per_ip[CONNLIMIT_SLOTS];
};

struct connlimit {
	int workers;
	size_t bytes;
	struct connlimit_row rows[];
};

struct connlimit *connlimit_new(int workers)
{
	size_t bytes = sizeof(struct connlimit) + (size_t)workers * sizeof(struct connlimit_row);
	struct connlimit *c =
	    mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) {
		log_error(0, "event=connlimit_new call=mmap failed");
		return NULL;
	}
	c->workers = workers; /* the kernel zero-fills: every count starts at 0 */
	c->bytes = bytes;
	return c;
}

void connlimit_free(struct connlimit *c)
{
	if (c != NULL)
		munmap(c, c->bytes);
}

/* FNV-1a over the address bytes (IPv4-mapped IPv6 counts as the IPv4 address). */
static unsigned slot_of(const struct sockaddr *addr)
{
	const unsigned char *b;
	size_t n;
	if (addr->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)(const void *)addr)
		        ->sin_addr;
		n = 4;
	} else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
		b = IN6_IS_ADDR_V4MAPPED(a6) ? &a6->s6_addr[12] : a6->s6_addr;
		n = IN6_IS_ADDR_V4MAPPED(a6) ? 4 : 16;
	} else {
		return 0;
	}
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h % CONNLIMIT_SLOTS;
}

int connlimit_acquire(struct connlimit *c, int worker, const struct sockaddr *addr, int max_total,
                      int max_per_ip)
{
	unsigned slot = slot_of(addr);
	int total = 0, ip = 0;
	for (int w = 0; w < c->workers; w++) {
		total += atomic_load(&c->rows[w].total);
		ip += atomic_load(&c->rows[w].per_ip[slot]);
	}
	if (total >= max_total || ip >= max_per_ip)
		return -1;
	atomic_fetch_add(&c->rows[worker].total, 1);
	atomic_fetch_add(&c->rows[worker].per_ip[slot], 1);
	return 0;
}

void connlimit_release(struct connlimit *c, int worker, const struct sockaddr *addr)
{
	atomic_fetch_sub(&c->rows[worker].per_ip[slot_of(addr)], 1);
	atomic_fetch_sub(&c->rows[worker].total, 1);
}

void connlimit_reset_worker(struct connlimit *c, int worker)
{
	memset(&c->rows[worker], 0, sizeof c->rows[worker]);
}

int connlimit_total(struct connlimit *c)
{
	int total = 0;
	for (int w = 0; w < c->workers; w++)
		total += atomic_load(&c->rows[w].total);
	return total;
}
