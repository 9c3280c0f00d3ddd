/*
 * bounce_parse.h: pure parser of asynchronous bounces, complaints and auto-replies as they come
 * back to the VERP return path: RFC 3464 delivery status notifications (multipart/report;
 * report-type=delivery-status), RFC 5965 feedback reports (report-type=feedback-report, with
 * RFC 6591 auth-failure and RFC 6650 types), RFC 3834 auto-replies, and the plain-text bounces
 * of MTAs that send no DSN (qmail, Exim without DSN, Yahoo, old Postfix and Sendmail, Exchange
 * and Gmail texts), read by heuristics. MIME per RFC 2045/2046 (nested multiparts, base64,
 * quoted-printable, message/rfc822, text/rfc822-headers); RFC 5322 header unfolding; RFC 2047
 * encoded words in Subject.
 *
 * One call reads one message (bytes as received, CRLF or LF line ends) and fills a struct
 * bounce_report; each recipient found gets its diagnostic classified with bounce_classify and
 * the rules given. The report also carries what identifies the returned original message
 * (its Message-ID, X-Postino-ID header and envelope sender), so the caller can find it when
 * the VERP token is missing or forged.
 *
 * Order of decisions (first that holds):
 *   1. a message/delivery-status part: kind DSN, one recipient per per-recipient block;
 *   2. a message/feedback-report part: kind ARF, reason feedback, class complaint (ignore for
 *      feedback types not-spam and auth-failure: they are not the recipient asking to stop);
 *   3. a bounce by its looks (From MAILER-DAEMON, postmaster or MicrosoftExchange..., a bounce
 *      Subject, or an X-Failed-Recipients header): kind TEXT, recipients and diagnostics
 *      read from the human-readable text;
 *   4. an auto-reply (Auto-Submitted: auto-replied, X-Autoreply, X-Autorespond, Precedence:
 *      auto_reply, or an out-of-office Subject): kind AUTOREPLY, one recipient (the From
 *      address), reason vacation, class ignore;
 *   5. anything else: kind NOTBOUNCE, no recipient.
 * A failed DSN recipient whose status is 4.x.x and whose reason says nothing about the
 * recipient (networkerror, systemerror, onhold, undefined) becomes expired: the MTA gave up
 * retrying. A more telling reason (mailboxfull, ratelimited...) is kept. Action delivered, relayed
 * or expanded gives reason delivered, class ignore. A bounce whose recipient cannot be found gets
 * one recipient with an empty address: the caller takes it from the VERP token.
 *
 * Limits (each one tested): BOUNCE_PARSE_INPUT_MAX octets read, BOUNCE_PARSE_DEPTH_MAX MIME
 * nesting, BOUNCE_PARSE_PARTS_MAX entities, BOUNCE_PARSE_RCPTS_MAX recipients,
 * BOUNCE_PARSE_HEADER_MAX octets of one header section, BOUNCE_PARSE_TEXT_MAX octets of text
 * read by the heuristics; decoded parts (base64, QP) never add up to more than twice the input.
 * A limit reached, a missing final boundary or a cut input sets truncated; nothing aborts.
 * No I/O, no logging; memory is allocated only while the call runs, and freed before it ends.
 */
#ifndef POSTINO_BOUNCE_PARSE_H
#define POSTINO_BOUNCE_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/bounce.h"
#include "relay/smtp_parse.h"
#include "relay/smtp_reply.h"

#define BOUNCE_PARSE_INPUT_MAX  (8u << 20) /* octets of a message read; the rest is ignored */
#define BOUNCE_PARSE_DEPTH_MAX  8          /* nesting of multiparts and message parts */
#define BOUNCE_PARSE_PARTS_MAX  128        /* MIME entities visited */
#define BOUNCE_PARSE_RCPTS_MAX  100        /* recipients of one report */
#define BOUNCE_PARSE_HEADER_MAX 65536      /* octets of one header section read */
#define BOUNCE_PARSE_TEXT_MAX   131072     /* octets of human-readable text read */
#define BOUNCE_ADDRESS_MAX      SMTP_PATH_MAX
#define BOUNCE_DIAGNOSTIC_MAX   1024
#define BOUNCE_FIELD_MAX        255 /* Message-ID, X-Postino-ID, MTA names, Subject... */

enum bounce_kind {
	BOUNCE_KIND_NOTBOUNCE,
	BOUNCE_KIND_DSN,       /* RFC 3464 */
	BOUNCE_KIND_ARF,       /* RFC 5965 */
	BOUNCE_KIND_AUTOREPLY, /* RFC 3834 and common out-of-office forms */
	BOUNCE_KIND_TEXT,      /* a non-standard bounce read by heuristics */
};

enum bounce_parse_status {
	BOUNCE_PARSE_OK,
	BOUNCE_PARSE_NOMEM, /* a decoding buffer could not be allocated; the report is partial */
};

struct bounce_recipient {
	char address[BOUNCE_ADDRESS_MAX + 1];  /* Final-Recipient (or as found); "" unknown */
	char original[BOUNCE_ADDRESS_MAX + 1]; /* Original-Recipient, "" when absent */
	char action[16];                       /* failed, delayed, delivered, relayed, expanded */
	char status[SMTP_ENHANCED_MAX + 1];    /* "5.1.1", "" when none was found */
	int code;                              /* the remote reply code, 0 when none was found */
	char remote_mta[BOUNCE_FIELD_MAX + 1];
	/* Diagnostic-Code without its type ("550-5.1.1 The email account ..."), or the reply
	 * found in the text; whitespace folded; peer bytes (escape before printing) */
	char diagnostic[BOUNCE_DIAGNOSTIC_MAX + 1];
	/* rule_file "" and rule_line 0 when the parser decided (success action, expiry, ARF,
	 * auto-reply) rather than a rule */
	struct bounce_verdict verdict;
};

/* About 190 KiB: allocate it, do not put it on a small stack. */
struct bounce_report {
	enum bounce_kind kind;
	bool truncated; /* a limit was reached, the input was cut or a boundary is missing */
	size_t recipient_count;
	bool recipients_truncated; /* more than BOUNCE_PARSE_RCPTS_MAX were found */
	struct bounce_recipient recipients[BOUNCE_PARSE_RCPTS_MAX];
	char from[BOUNCE_ADDRESS_MAX + 1];  /* the report's From address */
	char subject[BOUNCE_FIELD_MAX + 1]; /* encoded words decoded, whitespace folded */
	char reporting_mta[BOUNCE_FIELD_MAX + 1];
	char envelope_id[BOUNCE_FIELD_MAX + 1]; /* DSN Original-Envelope-Id (RFC 3461 ENVID) */
	/* ARF */
	char feedback_type[32]; /* abuse, fraud, virus, other, not-spam... */
	char reported_domain[BOUNCE_FIELD_MAX + 1];
	char source_ip[64];
	/* the returned original message (message/rfc822, text/rfc822-headers or an inline copy) */
	bool has_original;
	char original_message_id[BOUNCE_FIELD_MAX + 1];
	char original_postino_id[BOUNCE_FIELD_MAX + 1]; /* its X-Postino-ID header */
	/* its envelope sender: Return-Path of the returned message, else ARF Original-Mail-From,
	 * else the DSN's X-Postfix-Sender */
	char original_envelope_from[BOUNCE_ADDRESS_MAX + 1];
};

/*
 * Parses msg[0..len) into *out (overwritten entirely). rules classifies each recipient's
 * diagnostic (NULL: every reason undefined). Returns BOUNCE_PARSE_OK, or BOUNCE_PARSE_NOMEM
 * with a partial report. Never reads past len; never fails on malformed input.
 */
enum bounce_parse_status bounce_parse(const struct bounce_rules *rules, const char *msg, size_t len,
                                      struct bounce_report *out);

/* "notbounce", "dsn", "arf", "autoreply", "text". */
const char *bounce_kind_name(enum bounce_kind k);

#endif
