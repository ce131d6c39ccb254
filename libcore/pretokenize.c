/* pretokenize.c - PCRE2 JIT matching loop and the named patterns.
 * The White_Space set is spelled out once (WS) and pasted into the
 * patterns where the references write \s, so PCRE2's slightly different \s
 * (it adds U+180E) never matters. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "pretokenize.h"
#include "util.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
	   "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

const char TN_PAT_GPT2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
	"|[" WS "]+(?![^" WS "])|[" WS "]+";

const char TN_PAT_CL100K[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
	"| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+"
	"|[" WS "]+(?![^" WS "])|[" WS "]+";

const char TN_PAT_O200K[] =
	"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*"
	"[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
	"|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
	"[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
	"|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|[" WS "]*[\\r\\n]+"
	"|[" WS "]+(?![^" WS "])|[" WS "]+";

struct tn_pretok {
	pcre2_code *re;
	char *pattern;
};

struct tn_pretok_state {
	const struct tn_pretok *p;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *stack;
};

int tn_pretok_new(struct tn_pretok **out, const char *pattern, const char *what)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
				       &err, &off, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		return tn_fail(TN_EDATA, "%s: bad pre-tokenizer pattern at offset %zu: %s",
			       what, (size_t)off, (const char *)msg);
	}
	/* Without the JIT (some platforms) PCRE2 still matches, only slower. */
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	struct tn_pretok *p = tn_calloc(1, sizeof *p);
	char *copy = tn_strdup(pattern);
	if (!p || !copy) {
		free(p);
		free(copy);
		pcre2_code_free(re);
		return TN_ENOMEM;
	}
	p->re = re;
	p->pattern = copy;
	*out = p;
	return TN_OK;
}

void tn_pretok_free(struct tn_pretok *p)
{
	if (!p)
		return;
	pcre2_code_free(p->re);
	free(p->pattern);
	free(p);
}

const char *tn_pretok_pattern(const struct tn_pretok *p) { return p->pattern; }

int tn_pretok_state_new(struct tn_pretok_state **out, const struct tn_pretok *p)
{
	struct tn_pretok_state *s = tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	s->p = p;
	s->md = pcre2_match_data_create_from_pattern(p->re, NULL);
	s->mctx = pcre2_match_context_create(NULL);
	/* lookahead after a long whitespace run needs more than the default */
	s->stack = pcre2_jit_stack_create(32 << 10, 64 << 20, NULL);
	if (!s->md || !s->mctx || !s->stack) {
		tn_pretok_state_free(s);
		return tn_fail(TN_ENOMEM, "out of memory for pattern matching");
	}
	pcre2_jit_stack_assign(s->mctx, NULL, s->stack);
	*out = s;
	return TN_OK;
}

void tn_pretok_state_free(struct tn_pretok_state *s)
{
	if (!s)
		return;
	pcre2_match_data_free(s->md);
	pcre2_match_context_free(s->mctx);
	pcre2_jit_stack_free(s->stack);
	free(s);
}

/* Text that no match covered (invalid UTF-8 with the known patterns). */
static int emit_gap(const uint8_t *p, size_t n, tn_pretok_fn fn, void *ctx)
{
	return n > 0 ? fn(ctx, p, n) : TN_OK;
}

int tn_pretok_split(struct tn_pretok_state *s, const uint8_t *text, size_t len,
		    tn_pretok_fn fn, void *ctx)
{
	size_t pos = 0;
	while (pos < len) {
		int m = pcre2_match(s->p->re, text, len, pos, PCRE2_NOTEMPTY, s->md,
				    s->mctx);
		if (m == PCRE2_ERROR_NOMATCH)
			break;
		if (m < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(m, msg, sizeof msg);
			return tn_fail(TN_EDATA, "byte %zu: pre-tokenizer failed: %s",
				       pos, (const char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
		size_t a = ov[0], b = ov[1];
		int rc = emit_gap(text + pos, a - pos, fn, ctx);
		if (!rc)
			rc = fn(ctx, text + a, b - a);
		if (rc)
			return rc;
		pos = b;
	}
	return pos < len ? emit_gap(text + pos, len - pos, fn, ctx) : TN_OK;
}
