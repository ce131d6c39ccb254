/* spm.c - SentencePiece .model files: a protobuf ModelProto read by hand
 * (pieces with score and type, trainer and normalizer specs). Only BPE
 * models: the merge order is the pieces' score order, highest first, and
 * every split of a piece into two pieces is a merge to it, which is
 * SentencePiece's own rule (merge the adjacent pair whose concatenation is
 * the best-scoring piece). The normalizer is a port of SentencePiece's:
 * longest match in the model's precompiled character map (a darts-clone
 * double array), then its whitespace rules. */
#include "tokenizer.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define SPACE_MARK "\xe2\x96\x81"

enum { PIECE_NORMAL = 1, PIECE_UNKNOWN = 2, PIECE_CONTROL = 3, PIECE_USER = 4,
       PIECE_UNUSED = 5, PIECE_BYTE = 6 };

struct pb {
	const uint8_t *p, *end;
};

static int pb_varint(struct pb *b, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (b->p >= b->end)
			return -1;
		uint8_t c = *b->p++;
		*v |= (uint64_t)(c & 0x7f) << shift;
		if (c < 0x80)
			return 0;
	}
	return -1;
}

/* Next field: number, wire type, and for length-delimited ones the bytes,
 * for varints the value, for fixed32 the value in *v. */
static int pb_field(struct pb *b, uint32_t *num, struct pb *sub, uint64_t *v)
{
	uint64_t key;
	if (pb_varint(b, &key))
		return -1;
	*num = (uint32_t)(key >> 3);
	switch (key & 7) {
	case 0:
		return pb_varint(b, v);
	case 1:
		if (b->end - b->p < 8)
			return -1;
		*v = 0;
		b->p += 8;
		return 0;
	case 2:
		if (pb_varint(b, v) || *v > (uint64_t)(b->end - b->p))
			return -1;
		sub->p = b->p;
		sub->end = b->p + *v;
		b->p += *v;
		return 0;
	case 5:
		if (b->end - b->p < 4)
			return -1;
		*v = tn_le32(b->p);
		b->p += 4;
		return 0;
	default:
		return -1;
	}
}

struct piece {
	const uint8_t *s;
	size_t len;
	float score;
	int type;
};

struct model {
	struct piece *pieces;
	size_t n, cap;
	int model_type, byte_fallback, suffix_ws;
	int dummy, extra_ws, escape;
	struct pb charsmap;
	char name[32];
};

static int parse_piece(struct pb sub, struct piece *pc)
{
	*pc = (struct piece){ NULL, 0, 0, PIECE_NORMAL };
	uint32_t num;
	uint64_t v;
	struct pb s;
	while (sub.p < sub.end) {
		if (pb_field(&sub, &num, &s, &v))
			return -1;
		if (num == 1) {
			pc->s = s.p;
			pc->len = (size_t)(s.end - s.p);
		} else if (num == 2) {
			uint32_t u = (uint32_t)v;
			memcpy(&pc->score, &u, 4);
		} else if (num == 3) {
			pc->type = (int)v;
		}
	}
	return pc->s ? 0 : -1;
}

static int parse_trainer(struct pb sub, struct model *m)
{
	uint32_t num;
	uint64_t v;
	struct pb s;
	while (sub.p < sub.end) {
		if (pb_field(&sub, &num, &s, &v))
			return -1;
		if (num == 3) m->model_type = (int)v;
		else if (num == 35) m->byte_fallback = (int)v;
		else if (num == 24) m->suffix_ws = (int)v;
	}
	return 0;
}

static int parse_normalizer(struct pb sub, struct model *m)
{
	uint32_t num;
	uint64_t v;
	struct pb s;
	while (sub.p < sub.end) {
		if (pb_field(&sub, &num, &s, &v))
			return -1;
		if (num == 1)
			snprintf(m->name, sizeof m->name, "%.*s", (int)(s.end - s.p), (const char *)s.p);
		else if (num == 2) m->charsmap = s;
		else if (num == 3) m->dummy = (int)v;
		else if (num == 4) m->extra_ws = (int)v;
		else if (num == 5) m->escape = (int)v;
	}
	return 0;
}

static int parse_model(const char *path, const uint8_t *d, size_t n, struct model *m)
{
	memset(m, 0, sizeof *m);
	m->model_type = 1; /* protobuf defaults */
	m->dummy = m->extra_ws = m->escape = 1;
	struct pb b = { d, d + n }, sub;
	uint32_t num;
	uint64_t v;
	while (b.p < b.end) {
		size_t at = (size_t)(b.p - d);
		int bad = pb_field(&b, &num, &sub, &v);
		if (!bad && num == 1) {
			if (m->n == m->cap) {
				m->cap = m->cap ? 2 * m->cap : 1024;
				struct piece *np = tn_realloc(m->pieces, m->cap * sizeof *np);
				if (!np)
					return TN_ENOMEM;
				m->pieces = np;
			}
			bad = parse_piece(sub, &m->pieces[m->n++]);
		} else if (!bad && num == 2) {
			bad = parse_trainer(sub, m);
		} else if (!bad && num == 3) {
			bad = parse_normalizer(sub, m);
		}
		if (bad)
			return tn_fail(TN_EDATA, "%s: byte %zu: malformed or truncated protobuf "
				       "(not a SentencePiece model?)", path, at);
	}
	if (m->n == 0)
		return tn_fail(TN_EDATA, "%s: no pieces (not a SentencePiece model?)", path);
	return TN_OK;
}

static int check_supported(const char *path, const struct model *m)
{
	static const char *const types[] = { "?", "unigram", "bpe", "word", "char" };
	if (m->model_type != 2)
		return tn_fail(TN_EDATA, "%s: SentencePiece model type %s is not supported "
			       "(tn encodes BPE models)",
			       path, m->model_type >= 1 && m->model_type <= 4 ? types[m->model_type] : "unknown");
	if (m->suffix_ws)
		return tn_fail(TN_EDATA, "%s: treat_whitespace_as_suffix is not supported", path);
	return TN_OK;
}

static int cmp_score(const void *a, const void *b, void *pieces)
{
	const struct piece *p = pieces;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	/* a NaN score (a damaged file) sorts last, so the order stays total */
	float si = p[i].score == p[i].score ? p[i].score : -INFINITY;
	float sj = p[j].score == p[j].score ? p[j].score : -INFINITY;
	if (si != sj)
		return si > sj ? -1 : 1;
	return i < j ? -1 : 1;
}

/* rank = position in descending score order; equal scores share a rank so
 * that ties go to the leftmost pair, as in SentencePiece. */
static int make_ranks(const struct model *m, uint32_t **out)
{
	uint32_t n = (uint32_t)m->n;
	uint32_t *order = tn_malloc(n * sizeof *order), *rank = tn_malloc(n * sizeof *rank);
	if (!order || !rank) {
		free(order);
		free(rank);
		return TN_ENOMEM;
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < n; i++) {
		rank[i] = TN_BPE_NONE;
		if (m->pieces[i].type == PIECE_NORMAL || m->pieces[i].type == PIECE_USER)
			order[k++] = i;
	}
	qsort_r(order, k, sizeof *order, cmp_score, m->pieces);
	for (uint32_t i = 0, r = 0; i < k; i++) {
		if (i > 0 && m->pieces[order[i]].score != m->pieces[order[i - 1]].score)
			r = i;
		rank[order[i]] = r;
	}
	free(order);
	*out = rank;
	return TN_OK;
}

static int setup_pieces(struct tn_tokenizer *t, const char *path, const struct model *m)
{
	for (int b = 0; b < 256; b++)
		t->byte_piece[b] = TN_BPE_NONE;
	t->ws_split_safe = 1;
	int rc = TN_OK;
	for (uint32_t id = 0; id < m->n && !rc; id++) {
		const struct piece *pc = &m->pieces[id];
		if ((rc = tn_bpe_set(t->bpe, id, pc->s, pc->len))) {
			rc = tn_fail(rc, "%s: %s", path, tn_errmsg());
			break;
		}
		char *text = tn_malloc(pc->len + 1);
		if (!text)
			return TN_ENOMEM;
		memcpy(text, pc->s, pc->len);
		text[pc->len] = 0;
		unsigned byte;
		if (pc->type == PIECE_BYTE && pc->len == 6 && sscanf(text, "<0x%2X>", &byte) == 1) {
			t->byte_piece[byte] = id;
			t->dec_flags[id] = TN_DEC_BYTE;
		} else if (pc->type == PIECE_CONTROL || pc->type == PIECE_UNKNOWN) {
			if (pc->type == PIECE_UNKNOWN)
				t->unk_id = id;
			else
				t->dec_flags[id] = TN_DEC_CONTROL;
			rc = tn_tokenizer_add_special(t, text, id);
		} else if (pc->type == PIECE_USER) {
			char **u = tn_realloc(t->user_pieces, (t->n_user + 1) * sizeof *u);
			if (!u) {
				free(text);
				return TN_ENOMEM;
			}
			t->user_pieces = u;
			u[t->n_user++] = text;
			t->user_first[(uint8_t)text[0] >> 6] |= 1ull << ((uint8_t)text[0] & 63);
			text = NULL; /* kept */
		}
		free(text);
		/* a word may be cut before U+2581 only if no piece has one after
		 * other text */
		for (size_t i = 1; i + 3 <= pc->len && pc->type == PIECE_NORMAL; i++)
			if (memcmp(pc->s + i, "\xe2\x96\x81", 3) == 0 &&
			    (i < 3 || memcmp(pc->s + i - 3, "\xe2\x96\x81", 3) != 0))
				t->ws_split_safe = 0;
	}
	return rc;
}

/* Blob: trie size (u32 LE), the double array (u32 units), then the
 * replacement strings. */
static int load_charsmap(struct tn_tokenizer *t, const char *path, const struct model *m)
{
	size_t n = (size_t)(m->charsmap.end - m->charsmap.p);
	if (n == 0)
		return TN_OK;
	uint32_t tsize = n >= 4 ? tn_le32(m->charsmap.p) : 0;
	if (n < 4 || tsize % 4 || tsize == 0 || tsize > n - 4)
		return tn_fail(TN_EDATA, "%s: malformed precompiled character map", path);
	t->trie_units = tsize / 4;
	t->norm_len = n - 4 - tsize;
	t->trie = tn_malloc(tsize);
	t->norm_strings = tn_malloc(t->norm_len + 1);
	if (!t->trie || !t->norm_strings)
		return TN_ENOMEM;
	for (size_t i = 0; i < t->trie_units; i++)
		t->trie[i] = tn_le32(m->charsmap.p + 4 + 4 * i);
	memcpy(t->norm_strings, m->charsmap.p + 4 + tsize, t->norm_len);
	t->norm_strings[t->norm_len] = 0;
	return TN_OK;
}

/* darts-clone: the longest key of the trie that prefixes p[0..n); its
 * length (0: none) and value. */
static size_t trie_longest(const struct tn_tokenizer *t, const uint8_t *p, size_t n,
			   uint32_t *value)
{
	const uint32_t *a = t->trie;
	size_t best = 0, pos = 0;
	uint32_t unit = a[0];
	pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
	for (size_t i = 0; i < n; i++) {
		pos ^= p[i];
		if (pos >= t->trie_units)
			break;
		unit = a[pos];
		if ((unit & ((1u << 31) | 0xff)) != p[i])
			break;
		pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
		if (pos >= t->trie_units)
			break;
		if ((unit >> 8) & 1) {
			best = i + 1;
			*value = a[pos] & ((1u << 31) - 1);
		}
	}
	return best;
}

/* One step of SentencePiece's NormalizePrefix: what the text at p becomes
 * (*rep, *rlen) and how many bytes that consumes. */
static size_t normalize_prefix(const struct tn_tokenizer *t, const uint8_t *p, size_t n,
			       const uint8_t **rep, size_t *rlen)
{
	size_t u = tn_tokenizer_user_match(t, p, n);
	if (u) { /* user-defined pieces are not normalized */
		*rep = p;
		*rlen = u;
		return u;
	}
	if (!t->trie && p[0] < 0x80) {
		*rep = p;
		*rlen = 1;
		return 1;
	}
	uint32_t v = 0;
	size_t k = t->trie ? trie_longest(t, p, n, &v) : 0;
	if (k > 0 && v < t->norm_len) {
		*rep = (const uint8_t *)t->norm_strings + v;
		*rlen = strlen(t->norm_strings + v);
		return k;
	}
	utf8proc_int32_t cp;
	utf8proc_ssize_t m = utf8proc_iterate(p, (utf8proc_ssize_t)n, &cp);
	if (m <= 0) {
		*rep = (const uint8_t *)"\xef\xbf\xbd";
		*rlen = 3;
		return 1;
	}
	*rep = p;
	*rlen = (size_t)m;
	return (size_t)m;
}

/* Room for n more bytes at *out + len. */
static int reserve(uint8_t **out, size_t *cap, size_t len, size_t n)
{
	if (len + n <= *cap)
		return TN_OK;
	size_t c = (len + n) * 2 + 64;
	uint8_t *b = tn_realloc(*out, c);
	if (!b)
		return TN_ENOMEM;
	*out = b;
	*cap = c;
	return TN_OK;
}

int tn_spm_normalize(const struct tn_tokenizer *t, const uint8_t *in, size_t n,
		     uint8_t **out, size_t *cap, size_t *len)
{
	const uint8_t *rep;
	size_t rlen, k;
	int squeeze = t->remove_extra_spaces, rc = TN_OK;
	*len = 0;
	while (squeeze && n > 0 && (k = normalize_prefix(t, in, n, &rep, &rlen)) &&
	       rlen == 1 && rep[0] == ' ') {
		in += k;
		n -= k;
	}
	if (n == 0)
		return TN_OK;
	const char *sp = t->escape_spaces ? SPACE_MARK : " ";
	size_t sl = strlen(sp);
	if (t->add_dummy_prefix && !(rc = reserve(out, cap, *len, sl))) {
		memcpy(*out, sp, sl);
		*len = sl;
	}
	int prev_space = squeeze;
	while (n > 0 && !rc) {
		k = normalize_prefix(t, in, n, &rep, &rlen);
		while (prev_space && rlen > 0 && rep[0] == ' ') {
			rep++;
			rlen--;
		}
		if ((rc = reserve(out, cap, *len, 3 * rlen)))
			break;
		uint8_t *o = *out + *len;
		for (size_t i = 0; i < rlen; i++) {
			if (rep[i] == ' ') {
				memcpy(o, sp, sl);
				o += sl;
			} else {
				*o++ = rep[i];
			}
		}
		*len = (size_t)(o - *out);
		if (rlen > 0)
			prev_space = rep[rlen - 1] == ' ';
		in += k;
		n -= k;
		if (!squeeze)
			prev_space = 0;
	}
	while (squeeze && *len >= sl && memcmp(*out + *len - sl, sp, sl) == 0)
		*len -= sl;
	return rc;
}

static int all_bytes(const struct tn_tokenizer *t)
{
	for (int b = 0; b < 256; b++)
		if (t->byte_piece[b] == TN_BPE_NONE)
			return 0;
	return 1;
}

int tn_spm_load(struct tn_tokenizer *t, const char *path, const uint8_t *d, size_t n)
{
	struct model m;
	int rc = parse_model(path, d, n, &m);
	if (!rc)
		rc = check_supported(path, &m);
	if (!rc) {
		t->vocab_size = (uint32_t)m.n;
		rc = tn_bpe_new(&t->bpe, t->vocab_size);
	}
	if (!rc && !(t->dec_flags = tn_calloc(t->vocab_size, sizeof *t->dec_flags)))
		rc = TN_ENOMEM;
	if (!rc)
		rc = setup_pieces(t, path, &m);
	uint32_t *rank = NULL;
	if (!rc)
		rc = make_ranks(&m, &rank);
	if (!rc)
		rc = tn_bpe_merges_from_ranks(t->bpe, rank);
	free(rank);
	if (!rc)
		rc = load_charsmap(t, path, &m);
	if (!rc) {
		t->spm_normalizer = 1;
		t->byte_fallback = m.byte_fallback;
		t->add_dummy_prefix = m.dummy ? TN_DUMMY_ALWAYS : 0;
		t->remove_extra_spaces = m.extra_ws;
		t->escape_spaces = m.escape;
		t->eot_id = tn_tokenizer_token_id(t, "</s>");
		if (t->byte_fallback && !all_bytes(t))
			rc = tn_fail(TN_EDATA, "%s: byte_fallback is set but the <0x..> pieces are missing", path);
	}
	free(m.pieces);
	return rc;
}
