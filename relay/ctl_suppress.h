/*
 * ctl_suppress.h: the "suppression" commands of postinoctl: a user's (tenant's) suppression
 * list (queue/README.md, Suppression) through queue/queue.h's blocking admin functions.
 *
 *   suppression add USER ADDRESS [--reason TEXT] [--expires DAYS]
 *   suppression del USER ADDRESS
 *   suppression list USER
 *   suppression import USER FILE
 *   suppression export USER
 *
 * ADDRESS is "local@domain" or "*@domain" (every address of the domain). Export and import
 * use CSV (RFC 4180, one record per line) with the header line
 * "address,class,reason,source,created,expires"; times are UTC "YYYY-MM-DDTHH:MM:SSZ", an
 * empty expires means never.
 */
#ifndef POSTINO_CTL_SUPPRESS_H
#define POSTINO_CTL_SUPPRESS_H

#include <stdio.h>

struct queue_admin;

/* The longest CSV line import reads (its line end not counted), the most entries one file
 * may hold, and the most bad lines it reports before it counts the rest. */
#define CTL_SUPPRESS_LINE_MAX   2048
#define CTL_SUPPRESS_IMPORT_MAX 1000000
#define CTL_SUPPRESS_ERRORS_MAX 50
/* The longest --expires, in days. */
#define CTL_SUPPRESS_DAYS_MAX 3650

/*
 * Runs "postinoctl -c FILE suppression ARGS...": argv[0] is the subcommand, argv[1..] its
 * arguments, a the open admin connection (borrowed). Prints results on out and errors
 * ("postinoctl: ...", and "FILE:LINE: reason" for each bad line of an import) on err.
 * import checks every line first and imports nothing when one is bad. Returns the exit code:
 * 0 done, 1 failed, 2 usage.
 */
int ctl_suppress_run(struct queue_admin *a, int argc, char **argv, FILE *out, FILE *err);

/* ctl_suppress_run on stdout and stderr (postinoctl's command table calls this). */
int ctl_suppress_main(struct queue_admin *a, int argc, char **argv);

/* Writes the usage lines of the suppression commands (for postinoctl's usage text). */
void ctl_suppress_usage(FILE *out);

#endif
