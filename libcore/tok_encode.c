/* tok_encode.c - text to ids: the byte-level front end (pre-tokenize, then
 * BPE over bytes) and the SentencePiece-style one (normalize, escape spaces,
 * cut into words, BPE over characters, byte fallback for unknown ones).
 * Words are cached per thread; a SentencePiece text is cut into words only
 * where no vocabulary piece could span the cut, so the cut never changes
 * the result. */
#include "tokenizer.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define SPACE_MARK "\xe2\x96\x81"

struct tn_tok_state {
	const struct tn_tokenizer *t;
	struct tn_pretok_state *ps;
	struct tn_bpe_cache *cache;
	struct tn_idvec *out;
	struct tn_idvec word; /* ids of the current word */
	struct tn_idvec run;  /* initial symbols of a run of known characters */
	uint8_t *buf[2];    /* normalization ping-pong buffers */
	size_t cap[2];
};

int tn_tok_state_new(struct tn_tok_state **out, const struct tn_tokenizer *t)
{
	struct tn_tok_state *s = tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	s->t = t;
	int rc = tn_bpe_cache_new(&s->cache);
	if (!rc && t->pretok)
		rc = tn_pretok_state_new(&s->ps, t->pretok);
	if (rc) {
		tn_tok_state_free(s);
		return rc;
	}
	*out = s;
	return TN_OK;
}

void tn_tok_state_free(struct tn_tok_state *s)
{
	if (!s)
		return;
	tn_pretok_state_free(s->ps);
	tn_bpe_cache_free(s->cache);
	tn_idvec_free(&s->word);
	tn_idvec_free(&s->run);
	free(s->buf[0]);
	free(s->buf[1]);
	free(s);
}

/* ---- byte level ---- */

static int on_pretoken(void *ctx, const uint8_t *p, size_t n)
{
	struct tn_tok_state *s = ctx;
	const struct tn_tokenizer *t = s->t;
	if (t->ignore_merges) {
		uint32_t id = tn_bpe_lookup(t->bpe, p, n);
		if (id != TN_BPE_NONE)
			return tn_idvec_push(s->out, id);
	}
	return tn_bpe_encode_bytes(t->bpe, t->byte_id, s->cache, p, n, s->out);
}

/* ---- normalization ---- */

static int grow(struct tn_tok_state *s, int which, size_t need)
{
	if (need <= s->cap[which])
		return TN_OK;
	size_t c = need + need / 2 + 64;
	uint8_t *b = tn_realloc(s->buf[which], c);
	if (!b)
		return TN_ENOMEM;
	s->buf[which] = b;
	s->cap[which] = c;
	return TN_OK;
}

/* Copy text into buf[which], each invalid UTF-8 byte replaced by U+FFFD
 * (SentencePiece's rule, kept for SentencePiece-style HF files). */
static int sanitize(struct tn_tok_state *s, int which, const uint8_t *p, size_t n,
		    size_t *out_len)
{
	if (grow(s, which, 3 * n + 8))
		return TN_ENOMEM;
	uint8_t *o = s->buf[which];
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			o[k++] = p[i++];
			continue;
		}
		utf8proc_int32_t cp;
		utf8proc_ssize_t m = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
		if (m <= 0) {
			memcpy(o + k, "\xef\xbf\xbd", 3);
			k += 3;
			i++;
		} else {
			memcpy(o + k, p + i, (size_t)m);
			k += (size_t)m;
			i += (size_t)m;
		}
	}
	*out_len = k;
	return TN_OK;
}

/* Replace every occurrence of a by b (a non-empty). */
static int replace_all(struct tn_tok_state *s, int from, size_t n, const char *a,
		       const char *b, size_t *out_len)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t worst = lb > la ? n / la * (lb - la) + n : n;
	if (grow(s, !from, worst + 8))
		return TN_ENOMEM;
	const uint8_t *p = s->buf[from];
	uint8_t *o = s->buf[!from];
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		if (i + la <= n && p[i] == (uint8_t)a[0] && memcmp(p + i, a, la) == 0) {
			memcpy(o + k, b, lb);
			k += lb;
			i += la;
		} else {
			o[k++] = p[i++];
		}
	}
	*out_len = k;
	return TN_OK;
}

static int prepend(struct tn_tok_state *s, int from, size_t n, const char *a, size_t *out_len)
{
	size_t la = strlen(a);
	if (grow(s, !from, n + la + 8))
		return TN_ENOMEM;
	memcpy(s->buf[!from], a, la);
	memcpy(s->buf[!from] + la, s->buf[from], n);
	*out_len = n + la;
	return TN_OK;
}

static int unicode_map(struct tn_tok_state *s, int from, size_t n, enum tn_norm_op op,
		       size_t *out_len)
{
	int flags = UTF8PROC_STABLE;
	switch (op) {
	case TN_NORM_NFC: flags |= UTF8PROC_COMPOSE; break;
	case TN_NORM_NFKC: flags |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
	case TN_NORM_NFD: flags |= UTF8PROC_DECOMPOSE; break;
	case TN_NORM_NFKD: flags |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
	default: flags |= UTF8PROC_CASEFOLD; break;
	}
	utf8proc_uint8_t *res = NULL;
	utf8proc_ssize_t m = utf8proc_map(s->buf[from], (utf8proc_ssize_t)n,
					  &res, (utf8proc_option_t)flags);
	if (m < 0)
		return tn_fail(TN_EDATA, "normalization failed: %s", utf8proc_errmsg(m));
	int rc = grow(s, !from, (size_t)m + 8);
	if (!rc) {
		memcpy(s->buf[!from], res, (size_t)m);
		*out_len = (size_t)m;
	}
	free(res);
	return rc;
}

/* Normalize into one of the buffers; returns its index via *which. */
static int normalize(struct tn_tok_state *s, const uint8_t *text, size_t len,
		     int *which, size_t *n)
{
	const struct tn_tokenizer *t = s->t;
	*n = 0;
	if (t->spm_normalizer) {
		*which = 0;
		return tn_spm_normalize(t, text, len, &s->buf[0], &s->cap[0], n);
	}
	int cur = 0, rc = sanitize(s, 0, text, len, n);
	for (size_t i = 0; i < t->n_norm && !rc; i++) {
		const struct tn_norm_step *st = &t->norm[i];
		if (st->op == TN_NORM_PREPEND && *n == 0)
			continue; /* HF prepends only to a non-empty text */
		if (st->op == TN_NORM_PREPEND)
			rc = prepend(s, cur, *n, st->a, n);
		else if (st->op == TN_NORM_REPLACE)
			rc = replace_all(s, cur, *n, st->a, st->b, n);
		else
			rc = unicode_map(s, cur, *n, st->op, n);
		cur = !cur;
	}
	if (!rc && t->escape_spaces) {
		rc = replace_all(s, cur, *n, " ", SPACE_MARK, n);
		cur = !cur;
	}
	int present = *n >= 3 && memcmp(s->buf[cur], SPACE_MARK, 3) == 0;
	if (!rc && *n > 0 && t->add_dummy_prefix == TN_DUMMY_IF_ABSENT && !present) {
		rc = prepend(s, cur, *n, SPACE_MARK, n);
		cur = !cur;
	}
	*which = cur;
	return rc;
}

/* ---- SentencePiece-style words ---- */

static int flush_run(struct tn_tok_state *s)
{
	if (s->run.n == 0)
		return TN_OK;
	size_t m = tn_bpe_merge(s->t->bpe, s->run.v, s->run.n);
	if (m == SIZE_MAX)
		return TN_ENOMEM;
	int rc = tn_idvec_append(&s->word, s->run.v, m);
	s->run.n = 0;
	return rc;
}

static int unknown_char(struct tn_tok_state *s, const uint8_t *p, size_t n)
{
	const struct tn_tokenizer *t = s->t;
	int rc = flush_run(s);
	if (!t->byte_fallback)
		return rc ? rc : tn_idvec_push(&s->word, t->unk_id == TN_BPE_NONE ? 0 : t->unk_id);
	for (size_t i = 0; i < n && !rc; i++)
		rc = tn_idvec_push(&s->word, t->byte_piece[p[i]]);
	return rc;
}

static size_t utf8_len(uint8_t c)
{
	return c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

static int encode_word(struct tn_tok_state *s, const uint8_t *p, size_t n)
{
	const struct tn_tokenizer *t = s->t;
	size_t hn;
	const uint32_t *hit = tn_bpe_cache_get(s->cache, p, n, &hn);
	if (hit)
		return tn_idvec_append(s->out, hit, hn);
	s->word.n = s->run.n = 0;
	int rc = TN_OK;
	for (size_t i = 0; i < n && !rc;) {
		size_t k = tn_tokenizer_user_match(t, p + i, n - i);
		if (k) {
			rc = flush_run(s);
			if (!rc)
				rc = tn_idvec_push(&s->word, tn_bpe_lookup(t->bpe, p + i, k));
			i += k;
			continue;
		}
		k = TN_MIN(utf8_len(p[i]), n - i);
		uint32_t id = tn_bpe_lookup(t->bpe, p + i, k);
		rc = id == TN_BPE_NONE ? unknown_char(s, p + i, k) : tn_idvec_push(&s->run, id);
		i += k;
	}
	if (!rc)
		rc = flush_run(s);
	if (!rc)
		rc = tn_bpe_cache_put(s->cache, p, n, s->word.v, s->word.n);
	if (!rc)
		rc = tn_idvec_append(s->out, s->word.v, s->word.n);
	return rc;
}

static inline int is_mark(const uint8_t *p, size_t i, size_t n)
{
	return i + 3 <= n && p[i] == 0xe2 && p[i + 1] == 0x96 && p[i + 2] == 0x81;
}

static int encode_spm(struct tn_tok_state *s, const uint8_t *p, size_t n)
{
	const struct tn_tokenizer *t = s->t;
	int cut_all = t->split == TN_SPLIT_METASPACE;
	if (!cut_all && !t->ws_split_safe)
		return encode_word(s, p, n);
	size_t start = 0;
	int prev_mark = 0;
	for (size_t i = 0; i < n;) {
		if (is_mark(p, i, n)) {
			if (i > start && (cut_all || !prev_mark)) {
				int rc = encode_word(s, p + start, i - start);
				if (rc)
					return rc;
				start = i;
			}
			prev_mark = 1;
			i += 3;
		} else {
			prev_mark = 0;
			i++;
		}
	}
	return n > start ? encode_word(s, p + start, n - start) : TN_OK;
}

int tn_tokenizer_can_cut(const struct tn_tokenizer *t)
{
	return !t->byte_level && (t->split == TN_SPLIT_METASPACE || t->ws_split_safe);
}

int tn_tokenizer_normalize(struct tn_tok_state *s, const uint8_t *text, size_t len,
			   const uint8_t **norm, size_t *n)
{
	int which;
	int rc = normalize(s, text, len, &which, n);
	*norm = s->buf[which];
	return rc;
}

/* The word cuts of encode_spm, found from `from` on. */
size_t tn_tokenizer_next_cut(const struct tn_tokenizer *t, const uint8_t *p, size_t n,
			     size_t from)
{
	int cut_all = t->split == TN_SPLIT_METASPACE;
	for (size_t i = from > 0 ? from : 1; i + 3 <= n; i++)
		if (is_mark(p, i, n) && (cut_all || i < 3 || !is_mark(p, i - 3, n)))
			return i;
	return n;
}

int tn_tokenizer_encode_normalized(struct tn_tok_state *s, const uint8_t *norm, size_t n,
				   struct tn_idvec *out)
{
	s->out = out;
	return encode_spm(s, norm, n);
}

int tn_tokenizer_encode(struct tn_tok_state *s, const uint8_t *text, size_t len,
			struct tn_idvec *out)
{
	const struct tn_tokenizer *t = s->t;
	s->out = out;
	if (!t->byte_level) {
		int which;
		size_t n;
		int rc = normalize(s, text, len, &which, &n);
		return rc ? rc : encode_spm(s, s->buf[which], n);
	}
	if (t->n_norm || (t->add_prefix_space && len > 0 && text[0] != ' ')) {
		int which = 0;
		size_t n = len;
		int rc = grow(s, 0, len + 8);
		if (rc)
			return rc;
		memcpy(s->buf[0], text, len);
		for (size_t i = 0; i < t->n_norm && !rc; i++, which = !which) {
			const struct tn_norm_step *st = &t->norm[i];
			if (st->op == TN_NORM_PREPEND)
				rc = prepend(s, which, n, st->a, &n);
			else if (st->op == TN_NORM_REPLACE)
				rc = replace_all(s, which, n, st->a, st->b, &n);
			else
				rc = unicode_map(s, which, n, st->op, &n);
		}
		if (!rc && t->add_prefix_space && n > 0 && s->buf[which][0] != ' ') {
			rc = prepend(s, which, n, " ", &n);
			which = !which;
		}
		if (rc)
			return rc;
		text = s->buf[which];
		len = n;
	}
	if (!t->pretok)
		return on_pretoken(s, text, len);
	return tn_pretok_split(s->ps, text, len, on_pretoken, s);
}
