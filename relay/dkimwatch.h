/*
 * dkimwatch.h: the DKIM DNS watcher of the master process. Every dkim_dns_check_interval
 * seconds it looks up the TXT record of every pending selector of the key store
 * (dkim/dkkeys.h) through the configured resolver, activates a selector once its record
 * publishes its key (dkkeys_selector_activate: the key it replaces becomes retiring for
 * dkim_retire_grace seconds), and retires the retiring selectors whose time has come
 * (dkkeys_domain_retire_due). Each transition is logged. The workers see the change through
 * the store's generation file, without a signal.
 */
#ifndef POSTINO_DKIMWATCH_H
#define POSTINO_DKIMWATCH_H

#include <stddef.h>

#include "relay/config.h"

struct event_base;
struct dkimwatch;

/*
 * Starts the watcher on base: the first round a second from now, then one every
 * cfg->dkim_dns_check_interval seconds. cfg is borrowed and must outlive the watcher.
 * Returns the watcher, or NULL with the reason in err: cfg->dkim_dns_check_interval is 0
 * (err says "off"), the resolver cannot start, or out of memory.
 */
struct dkimwatch *dkimwatch_new(struct event_base *base, const struct config *cfg, char *err,
                                size_t errlen);

/* Stops the watcher: lookups in flight are cancelled, nothing is changed by them. NULL is a
 * no-op. Not from inside the watcher's own callbacks. */
void dkimwatch_free(struct dkimwatch *w);

#endif
