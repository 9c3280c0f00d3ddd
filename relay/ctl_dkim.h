/*
 * ctl_dkim.h: the "dkim" commands of postinoctl (key store administration through
 * dkim/dkkeys.h; nothing here goes through Redis).
 */
#ifndef POSTINO_CTL_DKIM_H
#define POSTINO_CTL_DKIM_H

#include <stdio.h>

#include "relay/config.h"

/*
 * Runs "postinoctl -c FILE dkim ARGS...": argv[0] is the subcommand (keygen, import, list,
 * show, rotate, activate, del), argv[1..] its arguments. Prints results on stdout and errors
 * ("postinoctl: ...") on stderr. Returns the exit code: 0 done, 1 failed, 2 usage.
 */
int ctl_dkim_main(const struct config *cfg, int argc, char **argv);

/* Writes the usage lines of the dkim commands (for postinoctl's usage text). */
void ctl_dkim_usage(FILE *out);

#endif
