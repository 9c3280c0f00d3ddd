/*
 * ctl_domain.h: the "domain" commands of postinoctl: "domain check DOMAIN" looks up, through
 * the configured resolver (relay/resolver.h), the DKIM key records of the domain's selectors,
 * its SPF record and its DMARC record, and says what to publish when one is wrong.
 *
 * Also the pure comparison of a published DKIM key record with a key of the store, which the
 * daemon's DKIM DNS watcher (relay/dkimwatch.c) uses too.
 */
#ifndef POSTINO_CTL_DOMAIN_H
#define POSTINO_CTL_DOMAIN_H

#include <stddef.h>
#include <stdio.h>

#include "dkim/dkkeys.h"
#include "relay/config.h"

/*
 * Runs "postinoctl -c FILE domain ARGS...": argv[0] is the subcommand ("check"), argv[1..]
 * its arguments. Prints one line per check on stdout ("PASS ..." or "FAIL ...: reason;
 * publish: record") and errors ("postinoctl: ...") on stderr. Returns the exit code: 0 when
 * every check passes, 1 when one fails (or the checks cannot run), 2 on a usage error.
 */
int ctl_domain_main(const struct config *cfg, int argc, char **argv);

/* Writes the usage lines of the domain commands (for postinoctl's usage text). */
void ctl_domain_usage(FILE *out);

/*
 * Compares the text of a DKIM key record (RFC 6376 3.6.1; the TXT record's strings already
 * joined; len octets, may hold NUL) with selector s's key: a valid tag-list, v= absent or
 * "DKIM1" and first, k= (default rsa) the key's algorithm, p= (with its whitespace removed)
 * equal to s->public_key, h= absent or listing sha256, s= absent or listing email or *.
 * Returns NULL when the record publishes the key, else a reason written into why (whylen
 * > 0), which is also returned.
 */
const char *ctl_domain_dkim_record_check(const char *txt, size_t len,
                                         const struct dkkeys_selector *s, char *why, size_t whylen);

#endif
