/*
 * ctl_bounce.h: the "bounce" commands of postinoctl, which read messages and replies without
 * Redis or the network:
 *
 *   bounce parse [--json] FILE...    what relay/bounce_parse.c finds in each message file
 *   bounce classify [--json] 'REPLY' how the rules classify one SMTP reply, and which rule
 *
 * The rules are the file given by the caller (deploy/bounce-rules.conf or the configured one).
 */
#ifndef POSTINO_CTL_BOUNCE_H
#define POSTINO_CTL_BOUNCE_H

#include <stdio.h>

/*
 * Runs "postinoctl bounce ARGS...": argv[0] is the subcommand ("parse" or "classify"),
 * argv[1..] its arguments. Prints results on stdout and errors ("postinoctl: ...") on stderr.
 * Returns the exit code: 0 done, 1 usage error, 2 a file (a message or the rules) could not
 * be read (the other files are still parsed).
 *
 * parse prints, per recipient found, one line of key=value pairs, or with --json one JSON
 * object per line: file, kind, recipient, action, status, code, reason, class, rule
 * ("file:line", "" when the parser decided), diagnostic, postino_id, message_id,
 * envelope_from, and feedback_type for feedback reports. A message that is no bounce prints
 * one object with reason "notbounce". classify takes the reply as one argument (several are
 * joined with spaces), reads its leading code and enhanced code, and prints reason, class,
 * rule, code and status.
 */
int ctl_bounce_main(const char *rules_path, int argc, char **argv);

/* ctl_bounce_main writing to out and err instead of stdout and stderr (for tests). */
int ctl_bounce_run(const char *rules_path, int argc, char **argv, FILE *out, FILE *err);

/* Writes the usage lines of the bounce commands (for postinoctl's usage text). */
void ctl_bounce_usage(FILE *out);

#endif
