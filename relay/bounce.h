/*
 * bounce.h: the vocabulary of delivery failures and the classifier of SMTP replies.
 *
 * Every failure gets a reason (Sisimai's vocabulary, enum bounce_reason) and a class (enum
 * bounce_class) that decides what Postino does with the address (DESIGN.md, Bounces):
 *   hard       the address is bad: suppress it now
 *   soft       recipient side, maybe temporary: count; suppress after N in D days
 *   block      the sender is at fault (IP, domain, authentication, content, rate, protocol):
 *              never blame the address; slow down or pause the site, alert
 *   complaint  a feedback report (ARF): suppress now
 *   ignore     auto-reply, success DSN: record only
 *
 * Default class of each reason (bounce_reason_class; a rules file may change it, see "class"):
 *   hard   userunknown hostunknown hasmoved
 *   soft   mailboxfull suspend systemfull systemerror networkerror expired undefined onhold
 *          filtered (the recipient's own filter or settings refused the message: recipient
 *          side, and it may change, so counted rather than suppressed at once)
 *   block  blocked badreputation spamdetected virusdetected policyviolation authfailure
 *          requireptr notcompliantrfc rejected norelaying securityerror failedstarttls
 *          contenterror ratelimited
 *          syntaxerror (the receiver refused our SMTP commands: our fault, never the address's)
 *          emailtoolarge (this message is too large for the receiver: the message is at fault,
 *          not the address; counting it against the address would suppress good addresses
 *          every time a tenant sends a large message)
 *   complaint  feedback
 *   ignore     vacation delivered
 *
 * Rules are data (deploy/bounce-rules.conf, and user files loaded in front of it). One rule
 * per line; '#' starts a comment (outside quotes); blank lines are skipped. A rule is a first
 * condition, optional extra conditions, a reason and an optional class:
 *
 *   status  PATTERN  [QUALIFIER...]  REASON  [CLASS]
 *   code    PATTERN  [QUALIFIER...]  REASON  [CLASS]
 *   text    PATTERN  [QUALIFIER...]  REASON  [CLASS]
 *   class   REASON   CLASS                      (changes the reason's default class; the
 *                                               first such line for a reason wins)
 *
 *   status PATTERN  an RFC 3463 enhanced status code, each of its three parts a number or '*':
 *                   "5.1.1", "*.1.1", "5.7.*". Matches the enhanced code given to
 *                   bounce_classify, or when none is given the first one found in the text.
 *   code PATTERN    a reply code, each digit a digit or 'x': "550", "5xx", "45x". When the
 *                   code is unknown (0) only "Nxx" matches, N taken from the enhanced code.
 *   text PATTERN    a case-insensitive substring of the reply text, in double quotes when it
 *                   holds spaces ("user unknown"; \" \\ and \* inside quotes stand for the
 *                   character). '*' matches any run of characters, so "listed*spamhaus"
 *                   matches "listed at zen.spamhaus.org". Runs of whitespace in the text and
 *                   in the pattern compare as one space; the text is matched with a space
 *                   added at both ends, so " rbl " finds the word at the start or the end.
 *                   Matching is a left-to-right search of each '*'-separated piece (memmem),
 *                   linear in the text: no regular expressions, no backtracking.
 *   QUALIFIER       code=PATTERN or status=PATTERN: the rule matches only when that holds too
 *                   (text "mailbox unavailable" code=55x userunknown).
 *   REASON, CLASS   names of the vocabulary; without CLASS the reason's class applies.
 *
 * Evaluation: rules in order (files in the order they were added, lines in file order); the
 * first rule whose every condition holds gives the verdict. A user file is added first so its
 * rules win. The shipped file is ordered in five sections so that a precise text beats a
 * generic status, and a status beats a vague text:
 *   1. texts that put the fault on the sender whatever the status says: blocklists
 *      ("listed at zen.spamhaus.org" under 550 5.1.1 is block, not hard), reputation,
 *      authentication (SPF, DKIM, DMARC), reverse DNS, rate limits, spam and virus verdicts,
 *      providers' policy codes (Yahoo TSS04/BL21, Microsoft S3150, Apple HM08, ...);
 *   2. recipient-side texts of providers and MTAs that are more precise than their status
 *      (Exchange's 5.1.10 RecipientNotFound, Microsoft's 550 5.5.0 mailbox unavailable,
 *      Postfix's 450 4.1.1 "User unknown in local recipient table" is hard although 4xx);
 *   3. enhanced status codes (RFC 3463 and the IANA registry, X.N.M with N > 0);
 *   4. generic texts (keywords) for replies without a useful status;
 *   5. reply code fallbacks (RFC 5321 4.2.3).
 * No rule matching gives undefined, with undefined's class.
 *
 * Limits: BOUNCE_RULES_MAX rules in all, BOUNCE_PATTERN_MAX octets per pattern,
 * BOUNCE_RULE_LINE_MAX octets per line, BOUNCE_RULES_FILE_MAX octets per file,
 * BOUNCE_RULE_FILES_MAX files; bounce_classify looks at the first BOUNCE_TEXT_MAX octets of
 * the text. Pure except bounce_rules_add_file (reads one file); no logging.
 */
#ifndef POSTINO_BOUNCE_H
#define POSTINO_BOUNCE_H

#include <stddef.h>

#include "relay/smtp_reply.h"

#define BOUNCE_RULES_MAX      4096
#define BOUNCE_PATTERN_MAX    256     /* octets of one text pattern, after unescaping */
#define BOUNCE_RULE_LINE_MAX  1024    /* octets of one rules line */
#define BOUNCE_RULES_FILE_MAX 1048576 /* octets of one rules file */
#define BOUNCE_RULE_FILES_MAX 16
#define BOUNCE_TEXT_MAX       4096 /* octets of reply text the classifier looks at */

enum bounce_reason {
	BOUNCE_REASON_USERUNKNOWN,
	BOUNCE_REASON_HOSTUNKNOWN,
	BOUNCE_REASON_HASMOVED,
	BOUNCE_REASON_MAILBOXFULL,
	BOUNCE_REASON_SUSPEND,
	BOUNCE_REASON_FILTERED,
	BOUNCE_REASON_SYSTEMFULL,
	BOUNCE_REASON_SYSTEMERROR,
	BOUNCE_REASON_NETWORKERROR,
	BOUNCE_REASON_EXPIRED,
	BOUNCE_REASON_BLOCKED,
	BOUNCE_REASON_BADREPUTATION,
	BOUNCE_REASON_SPAMDETECTED,
	BOUNCE_REASON_VIRUSDETECTED,
	BOUNCE_REASON_POLICYVIOLATION,
	BOUNCE_REASON_AUTHFAILURE,
	BOUNCE_REASON_REQUIREPTR,
	BOUNCE_REASON_NOTCOMPLIANTRFC,
	BOUNCE_REASON_REJECTED,
	BOUNCE_REASON_NORELAYING,
	BOUNCE_REASON_SECURITYERROR,
	BOUNCE_REASON_FAILEDSTARTTLS,
	BOUNCE_REASON_CONTENTERROR,
	BOUNCE_REASON_SYNTAXERROR,
	BOUNCE_REASON_RATELIMITED,
	BOUNCE_REASON_EMAILTOOLARGE,
	BOUNCE_REASON_FEEDBACK,
	BOUNCE_REASON_VACATION,
	BOUNCE_REASON_DELIVERED,
	BOUNCE_REASON_ONHOLD,
	BOUNCE_REASON_UNDEFINED,
	BOUNCE_REASON_COUNT
};

enum bounce_class {
	BOUNCE_CLASS_HARD,
	BOUNCE_CLASS_SOFT,
	BOUNCE_CLASS_BLOCK,
	BOUNCE_CLASS_COMPLAINT,
	BOUNCE_CLASS_IGNORE,
	BOUNCE_CLASS_COUNT
};

/* The reason's name ("userunknown"); "undefined" for a value out of range. */
const char *bounce_reason_name(enum bounce_reason r);
/* Looks up name[0..len) (exact, lowercase). Returns 0 and sets *out, or -1. */
int bounce_reason_from_name(const char *name, size_t len, enum bounce_reason *out);
/* The class's name ("hard"); "soft" for a value out of range. */
const char *bounce_class_name(enum bounce_class c);
int bounce_class_from_name(const char *name, size_t len, enum bounce_class *out);
/* The built-in default class of a reason (the table above). */
enum bounce_class bounce_reason_class(enum bounce_reason r);

struct bounce_rules;

struct bounce_verdict {
	enum bounce_reason reason;
	enum bounce_class class;
	const char *rule_file; /* the matching rule's file name, borrowed from the rules (valid
	                          until bounce_rules_free); "" when no rule matched */
	unsigned rule_line;    /* its line, 0 when no rule matched */
};

/* An empty rule set (classifies everything undefined). Returns NULL when out of memory.
 * Caller frees with bounce_rules_free. */
struct bounce_rules *bounce_rules_new(void);
/* Frees r; NULL is a no-op. */
void bounce_rules_free(struct bounce_rules *r);

/*
 * Appends the rules of text[0..len) (named name in errors and verdicts) after those already
 * in r. Returns 0, or -1 with "name:line: reason" in err (errlen > 0); on -1 r keeps the rules
 * it had before the call.
 */
int bounce_rules_add_text(struct bounce_rules *r, const char *name, const char *text, size_t len,
                          char *err, size_t errlen);
/* The same for the file at path (at most BOUNCE_RULES_FILE_MAX octets); errors are
 * "path:line: reason", or "path: <strerror>" when the file cannot be read. */
int bounce_rules_add_file(struct bounce_rules *r, const char *path, char *err, size_t errlen);

/* A new rule set from one file, or NULL with err set. Caller frees. */
struct bounce_rules *bounce_rules_load(const char *path, char *err, size_t errlen);
/* A new rule set from paths[0..n) in that order (a user file first, then the shipped one), or
 * NULL with err set. Caller frees. */
struct bounce_rules *bounce_rules_load_list(const char *const *paths, size_t n, char *err,
                                            size_t errlen);
/* A new rule set from text (for tests and built-in rules), or NULL with err set. */
struct bounce_rules *bounce_rules_parse(const char *name, const char *text, size_t len, char *err,
                                        size_t errlen);
/* Number of rules in r. */
size_t bounce_rules_count(const struct bounce_rules *r);

/*
 * Classifies one reply: code (200..599, or 0 when unknown), enhanced ("5.1.1"; NULL or ""
 * when none) and text[0..textlen) (peer bytes, may hold anything). Fills *out. Returns 0 when
 * a rule matched, -1 when none did (out: undefined with its class, no rule). rules may be
 * NULL (nothing matches).
 */
int bounce_classify(const struct bounce_rules *rules, int code, const char *enhanced,
                    const char *text, size_t textlen, struct bounce_verdict *out);

/*
 * Splits a reply as logs and DSN Diagnostic-Code fields print it ("550-5.1.1 text 550-5.1.1
 * more text", "550 text", "5.1.1 text", "text") into its code (*code 0 when none), enhanced
 * code (enhanced "" when none; taken only when its class matches the code's first digit) and
 * text: the rest with whitespace runs folded to one space, the repeated "550-5.1.1" /
 * "550 5.1.1" / "550-" prefixes of continuation lines removed, cut to textmax - 1 octets and
 * NUL-terminated (textmax > 0). Returns the text's length.
 */
size_t bounce_reply_split(const char *s, size_t len, int *code,
                          char enhanced[SMTP_ENHANCED_MAX + 1], char *text, size_t textmax);

/*
 * Finds the remote reply inside free text (a bounce's human-readable part, a Diagnostic-Code
 * of a non-SMTP type): the first code followed by an enhanced code of its class ("550 5.1.1",
 * "550-5.1.1"); else the first code (followed by SP, '-' or ':') at the start of s or after
 * ':' or a quote, with the first lone enhanced code of its class when there is one; else the
 * first lone enhanced code ("(#5.1.1)"). Lone means not inside a longer dotted number such as
 * an IP address. Sets *code (0: none) and enhanced ("": none); returns the offset where the
 * reply starts, or len when nothing was found.
 */
size_t bounce_reply_find(const char *s, size_t len, int *code,
                         char enhanced[SMTP_ENHANCED_MAX + 1]);

#endif
