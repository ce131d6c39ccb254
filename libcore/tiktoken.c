/* tiktoken.c - tiktoken rank files ("base64-token rank" per line, rank =
 * id = merge priority) and what the file does not say: the pre-tokenizer
 * pattern and the special tokens of the four OpenAI encodings, told apart by
 * the file name or, failing that, by the number of ranks. */
#include "tokenizer.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct encoding {
	const char *name;
	uint32_t ranks; /* lines in the file */
	const char *pattern;
	struct { const char *text; uint32_t id; } special[6];
};

static const struct encoding encodings[] = {
	{ "r50k_base", 50256, TN_PAT_GPT2, { { "<|endoftext|>", 50256 } } },
	{ "p50k_base", 50280, TN_PAT_GPT2, { { "<|endoftext|>", 50256 } } },
	{ "cl100k_base", 100256, TN_PAT_CL100K,
	  { { "<|endoftext|>", 100257 }, { "<|fim_prefix|>", 100258 },
	    { "<|fim_middle|>", 100259 }, { "<|fim_suffix|>", 100260 },
	    { "<|endofprompt|>", 100276 } } },
	{ "o200k_base", 199998, TN_PAT_O200K,
	  { { "<|endoftext|>", 199999 }, { "<|endofprompt|>", 200018 } } },
};

static int b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Decode standard base64 with padding; returns the length or -1. */
static long b64_decode(const uint8_t *s, size_t n, uint8_t *out)
{
	if (n == 0 || n % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			if (s[i + j] == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
			} else if ((v[j] = b64_value(s[i + j])) < 0 || pad) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (uint8_t)(w >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(w >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)w;
	}
	return (long)o;
}

static const struct encoding *which_encoding(const char *path, uint32_t nranks)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	for (size_t i = 0; i < TN_ARRAY_LEN(encodings); i++)
		if (strncmp(base, encodings[i].name, strlen(encodings[i].name)) == 0)
			return &encodings[i];
	for (size_t i = 0; i < TN_ARRAY_LEN(encodings); i++)
		if (encodings[i].ranks == nranks)
			return &encodings[i];
	return NULL;
}

struct rank_line {
	uint32_t rank;
	size_t off, len; /* base64 text in the file */
};

static int parse_lines(const char *path, const uint8_t *d, size_t n,
		       struct rank_line **out, size_t *count, uint32_t *max_rank)
{
	size_t cap = 1024, k = 0, line = 0;
	struct rank_line *v = tn_malloc(cap * sizeof *v);
	if (!v)
		return TN_ENOMEM;
	*max_rank = 0;
	for (size_t i = 0; i < n; line++) {
		const uint8_t *eol = memchr(d + i, '\n', n - i);
		size_t end = eol ? (size_t)(eol - d) : n;
		const uint8_t *s = d + i, *sp = memchr(s, ' ', end - i);
		size_t len = end - i;
		i = end + 1;
		if (len == 0)
			continue;
		uint64_t r;
		char num[24];
		size_t nl = sp ? (size_t)(s + len - sp - 1) : 0;
		if (sp && nl > 0 && nl < sizeof num) {
			memcpy(num, sp + 1, nl);
			num[nl] = 0;
		}
		if (!sp || nl == 0 || nl >= sizeof num || tn_parse_u64(num, &r, 0) || r >= (1u << 24)) {
			free(v);
			return tn_fail(TN_EDATA, "%s: line %zu: expected \"BASE64 RANK\"", path, line + 1);
		}
		if (k == cap) {
			struct rank_line *nv = tn_realloc(v, (cap *= 2) * sizeof *v);
			if (!nv) {
				free(v);
				return TN_ENOMEM;
			}
			v = nv;
		}
		v[k++] = (struct rank_line){ (uint32_t)r, (size_t)(s - d), (size_t)(sp - s) };
		*max_rank = TN_MAX(*max_rank, (uint32_t)r);
	}
	if (k == 0) {
		free(v);
		return tn_fail(TN_EDATA, "%s: no ranks in the file", path);
	}
	*out = v;
	*count = k;
	return TN_OK;
}

int tn_tiktoken_load(struct tn_tokenizer *t, const char *path, const uint8_t *d, size_t n)
{
	struct rank_line *lines = NULL;
	size_t count = 0;
	uint32_t max_rank = 0;
	int rc = parse_lines(path, d, n, &lines, &count, &max_rank);
	if (rc)
		return rc;
	const struct encoding *enc = which_encoding(path, (uint32_t)count);
	if (!enc) {
		free(lines);
		return tn_fail(TN_EDATA, "%s: %zu ranks match no known encoding; name the file "
			       "r50k_base, p50k_base, cl100k_base or o200k_base.tiktoken", path, count);
	}
	uint32_t size = max_rank + 1;
	for (size_t i = 0; i < TN_ARRAY_LEN(enc->special) && enc->special[i].text; i++)
		size = TN_MAX(size, enc->special[i].id + 1);
	t->vocab_size = size;
	rc = tn_bpe_new(&t->bpe, size);
	uint8_t tok[512];
	for (size_t i = 0; i < count && !rc; i++) {
		long m = lines[i].len <= 680 ? b64_decode(d + lines[i].off, lines[i].len, tok) : -1;
		if (m <= 0) {
			rc = tn_fail(TN_EDATA, "%s: rank %u: bad base64", path, lines[i].rank);
			break;
		}
		if ((rc = tn_bpe_set(t->bpe, lines[i].rank, tok, (size_t)m)))
			rc = tn_fail(rc, "%s: %s", path, tn_errmsg());
	}
	free(lines);
	if (!rc)
		rc = tn_bpe_merges_from_ranks(t->bpe, NULL);
	/* specials only after the merges, so that no merge can produce one */
	for (size_t i = 0; i < TN_ARRAY_LEN(enc->special) && enc->special[i].text && !rc; i++)
		rc = tn_tokenizer_add_special(t, enc->special[i].text, enc->special[i].id);
	if (!rc)
		rc = tn_gpt2_byte_ids(t, path);
	if (!rc)
		rc = tn_pretok_new(&t->pretok, enc->pattern, path);
	t->eot_id = enc->special[0].id;
	return rc;
}
