/*
 * message.c: the stored form of a submitted message (see message.h).
 */
#include "relay/message.h"

#include <stdio.h>
#include <string.h>

#include "relay/header.h"

void message_date(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	if (strftime(out, outlen, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0 && outlen > 0)
		out[0] = '\0';
}

static const char *with_keyword(const struct message_trace *t)
{
	/* RFC 3848: S = TLS, A = authenticated; RFC 6531: UTF8 prefix */
	static const char *const kw[2][2][2] = {
	    {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
	    {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
	};
	if (!t->esmtp)
		return "SMTP";
	return kw[t->utf8][t->tls[0] != '\0'][t->authenticated];
}

/* The unfolded, trimmed value of an X-Campaign-ID field into meta. */
static void campaign_take(const struct header_field *f, struct message_meta *meta)
{
	if (meta->campaign[0] != '\0' || meta->campaign_bad) {
		meta->campaign_bad = true; /* twice: which one would be meant? */
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < f->value_len; i++) {
		unsigned char c = (unsigned char)f->value[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (n > 0 && i + 1 < f->value_len) {
				/* inner white space: only trailing folding/space is allowed */
				size_t k = i;
				while (k < f->value_len &&
				       (f->value[k] == ' ' || f->value[k] == '\t' ||
				        f->value[k] == '\r' || f->value[k] == '\n'))
					k++;
				if (k < f->value_len) {
					meta->campaign_bad = true;
					return;
				}
			}
			continue;
		}
		if (c < 0x21 || c > 0x7e || n == MESSAGE_CAMPAIGN_MAX) {
			meta->campaign_bad = true;
			return;
		}
		meta->campaign[n++] = (char)c;
	}
	meta->campaign[n] = '\0';
	if (n == 0)
		meta->campaign_bad = true;
}

const char *message_prepare(const struct message_trace *t, const char *in, size_t len,
                            struct buf *out, struct message_meta *meta)
{
	bool has_msgid = false, has_date = false;
	struct header_iter it;
	struct header_field f;
	memset(meta, 0, sizeof *meta);
	header_iter_init(&it, in, len);
	while (header_next(&it, &f) == HEADER_FIELD) {
		if (header_name_is(&f, "Message-ID"))
			has_msgid = true;
		else if (header_name_is(&f, "Date"))
			has_date = true;
		else if (header_name_is(&f, "X-Campaign-ID"))
			campaign_take(&f, meta);
	}
	char date[64];
	message_date(t->time, date, sizeof date);
	if (buf_reserve(out, len + 1024) == -1)
		return "out of memory";
	int rc = buf_printf(out, "Received: from %s ([%s])\r\n\tby %s (Postino) with %s id %s",
	                    t->helo, t->client_ip, t->hostname, with_keyword(t), t->qid);
	if (rc == 0 && t->tls[0] != '\0')
		rc = buf_printf(out, "\r\n\t(%s)", t->tls);
	if (rc == 0 && t->for_rcpt[0] != '\0')
		rc = buf_printf(out, "\r\n\tfor <%s>", t->for_rcpt);
	if (rc == 0)
		rc = buf_printf(out, ";\r\n\t%s\r\n", date);
	if (rc == 0 && !has_msgid)
		rc = buf_printf(out, "Message-ID: <%s.%lld@%s>\r\n", t->qid, (long long)t->time,
		                t->hostname);
	if (rc == 0 && !has_date)
		rc = buf_printf(out, "Date: %s\r\n", date);
	/* the message, without the fields meant for Postino */
	size_t from = 0;
	header_iter_init(&it, in, len);
	while (rc == 0 && header_next(&it, &f) == HEADER_FIELD) {
		if (!header_name_is(&f, "X-Campaign-ID"))
			continue;
		rc = buf_append(out, in + from, f.offset - from);
		from = f.offset + f.length;
	}
	if (rc == 0)
		rc = buf_append(out, in + from, len - from);
	return rc == 0 ? NULL : "out of memory";
}
