/*
 * message.h: turns the bytes received in DATA into the message Postino stores: its own
 * Received: header on top (RFC 5321 4.4, "with" keywords of RFC 3848 and RFC 6531), and
 * Message-ID: and Date: when the client left them out (RFC 5322 3.6.4, 3.6.1). Pure: no I/O,
 * safe on any thread.
 */
#ifndef POSTINO_MESSAGE_H
#define POSTINO_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "relay/buf.h"
#include "relay/smtp_parse.h"

/* What the Received: header records about the session. */
struct message_trace {
	char qid[17];
	char helo[SMTP_DOMAIN_MAX + 1];
	char client_ip[64];
	char hostname[256];
	char tls[96];                     /* "" when not in TLS, else "TLSv1.3 CIPHER" */
	char for_rcpt[SMTP_PATH_MAX + 1]; /* "" unless there is a single recipient */
	bool esmtp;
	bool authenticated;
	bool utf8;
	size_t header_len;
	time_t time;
};

#define MESSAGE_CAMPAIGN_MAX 128 /* queue/queue.h QUEUE_CAMPAIGN_MAX */

/* What the client told Postino in its own header fields, which are removed from the stored
 * message (they are for Postino, not for the recipient). */
struct message_meta {
	char campaign[MESSAGE_CAMPAIGN_MAX + 1]; /* X-Campaign-ID, "" when none */
	bool campaign_bad; /* X-Campaign-ID is not 1..128 printable ASCII octets without spaces,
	                      or appears twice: refuse the message (550 5.6.0) */
};

/* Writes the stored form of in[0..len) (a CRLF message, as the DATA reader produced) into
 * out, without any X-Campaign-ID field, whose value goes to meta. Returns NULL, or a reason
 * when out cannot grow. */
const char *message_prepare(const struct message_trace *t, const char *in, size_t len,
                            struct buf *out, struct message_meta *meta);

/* Formats an RFC 5322 date-time ("Sun, 22 Nov 2026 01:50:00 +0000") into out (>= 32). */
void message_date(time_t t, char *out, size_t outlen);

#endif
