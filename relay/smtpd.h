/*
 * smtpd.h: the SMTP submission session (RFC 5321, 3207 STARTTLS, 4954 AUTH, 1870 SIZE,
 * 2920 PIPELINING, 6152 8BITMIME, 2034 ENHANCEDSTATUSCODES, 6531 SMTPUTF8).
 */
#ifndef POSTINO_SMTPD_H
#define POSTINO_SMTPD_H

#include <stdbool.h>
#include <sys/socket.h>

struct server;

/* Creates the session registry of srv. Returns 0 or -1. */
int smtpd_init(struct server *srv);
/* Closes every session at once and frees the registry. */
void smtpd_shutdown(struct server *srv);
/* For shutdown: answers 421 4.3.2 and closes every session that is between transactions
 * (force: every session, even mid-transaction). Sessions finishing a message close after its
 * reply. */
void smtpd_drain(struct server *srv, bool force);

/* Number of open sessions. */
size_t smtpd_count(const struct server *srv);

/* Takes an accepted socket: admits it (connection limits) and starts a session, or answers
 * 421 and closes it. */
void smtpd_accept(struct server *srv, int fd, const struct sockaddr *sa, int salen,
                  bool implicit_tls);

#endif
