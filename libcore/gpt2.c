/* gpt2.c - OpenAI's GPT-2 files: encoder.json (token string -> id, tokens
 * spelled in GPT-2's printable byte alphabet) and vocab.bpe (one merge "a b"
 * per line, in rank order, after a "#version" line). Tokens are stored as
 * raw bytes; merge i maps (id a, id b) to id(a b) at rank i. */
#include "io.h"
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int load_encoder(struct tn_tokenizer *t, const char *path)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	if (!root)
		return tn_fail(TN_EDATA, "%s: line %d: %s", path, err.line, err.text);
	int rc = TN_OK;
	if (!json_is_object(root) || json_object_size(root) == 0) {
		rc = tn_fail(TN_EDATA, "%s: expected an object of token -> id", path);
		goto out;
	}
	uint32_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		json_int_t id = json_integer_value(v);
		if (!json_is_integer(v) || id < 0 || id >= (1 << 24)) {
			rc = tn_fail(TN_EDATA, "%s: token \"%s\": id is not an integer in [0, 2^24)",
				     path, key);
			goto out;
		}
		n = TN_MAX(n, (uint32_t)id + 1);
	}
	t->vocab_size = n;
	if ((rc = tn_bpe_new(&t->bpe, n)))
		goto out;
	uint8_t *tmp = NULL;
	json_object_foreach(root, key, v) {
		size_t len = strlen(key);
		uint8_t *nt = tn_realloc(tmp, len + 1);
		if (!nt) {
			rc = TN_ENOMEM;
			break;
		}
		tmp = nt;
		long m = tn_gpt2_unprintable(key, len, tmp);
		if (m < 0) {
			rc = tn_fail(TN_EDATA, "%s: token \"%s\" has a character outside GPT-2's "
				     "byte alphabet", path, key);
			break;
		}
		if ((rc = tn_bpe_set(t->bpe, (uint32_t)json_integer_value(v), tmp, (size_t)m))) {
			rc = tn_fail(rc, "%s: %s", path, tn_errmsg());
			break;
		}
		if (strcmp(key, "<|endoftext|>") == 0) {
			t->eot_id = (uint32_t)json_integer_value(v);
			rc = tn_tokenizer_add_special(t, key, t->eot_id);
		}
	}
	free(tmp);
out:
	json_decref(root);
	return rc;
}

/* The id of a merge side written in the printable alphabet. */
static uint32_t side_id(const struct tn_tokenizer *t, const char *s, size_t len, uint8_t *tmp)
{
	long m = tn_gpt2_unprintable(s, len, tmp);
	return m < 0 ? TN_BPE_NONE : tn_bpe_lookup(t->bpe, tmp, (size_t)m);
}

static int load_merges(struct tn_tokenizer *t, const char *path)
{
	uint8_t *d;
	size_t n;
	int rc = tn_read_file(path, &d, &n);
	if (rc)
		return rc;
	uint8_t *tmp = tn_malloc(n + 1);
	if (!tmp) {
		free(d);
		return TN_ENOMEM;
	}
	size_t line = 0, rank = 0;
	for (size_t i = 0; i < n && !rc; line++) {
		const uint8_t *eol = memchr(d + i, '\n', n - i);
		size_t end = eol ? (size_t)(eol - d) : n, len = end - i;
		const char *s = (const char *)d + i;
		i = end + 1;
		if (len == 0 || (line == 0 && s[0] == '#'))
			continue;
		const char *sp = memchr(s, ' ', len);
		if (!sp || sp == s || sp == s + len - 1) {
			rc = tn_fail(TN_EDATA, "%s: line %zu: expected \"left right\"", path, line + 1);
			break;
		}
		size_t la = (size_t)(sp - s), lb = len - la - 1;
		uint32_t a = side_id(t, s, la, tmp), b = side_id(t, sp + 1, lb, tmp);
		uint32_t m = TN_BPE_NONE;
		long k1 = tn_gpt2_unprintable(s, la, tmp), k2 = -1;
		if (k1 >= 0)
			k2 = tn_gpt2_unprintable(sp + 1, lb, tmp + k1);
		if (k1 >= 0 && k2 >= 0)
			m = tn_bpe_lookup(t->bpe, tmp, (size_t)(k1 + k2));
		if (a == TN_BPE_NONE || b == TN_BPE_NONE || m == TN_BPE_NONE) {
			rc = tn_fail(TN_EDATA, "%s: line %zu: merge \"%.*s\" names a token that "
				     "encoder.json lacks", path, line + 1, (int)len, s);
			break;
		}
		rc = tn_bpe_add_merge(t->bpe, a, b, (uint32_t)rank++, m);
	}
	free(tmp);
	free(d);
	return rc;
}

int tn_gpt2_byte_ids(struct tn_tokenizer *t, const char *what)
{
	for (int b = 0; b < 256; b++) {
		uint8_t c = (uint8_t)b;
		t->byte_id[b] = tn_bpe_lookup(t->bpe, &c, 1);
		if (t->byte_id[b] == TN_BPE_NONE)
			return tn_fail(TN_EDATA, "%s: byte 0x%02x has no token", what, b);
	}
	t->byte_level = 1;
	return TN_OK;
}

int tn_gpt2_load(struct tn_tokenizer *t, const char *dir)
{
	size_t dl = strlen(dir) + 16;
	char *enc = tn_malloc(dl), *voc = tn_malloc(dl);
	int rc = enc && voc ? TN_OK : TN_ENOMEM;
	if (!rc) {
		snprintf(enc, dl, "%s/encoder.json", dir);
		snprintf(voc, dl, "%s/vocab.bpe", dir);
		rc = load_encoder(t, enc);
	}
	if (!rc)
		rc = load_merges(t, voc);
	if (!rc)
		rc = tn_gpt2_byte_ids(t, enc);
	if (!rc)
		rc = tn_pretok_new(&t->pretok, TN_PAT_GPT2, dir);
	free(enc);
	free(voc);
	return rc;
}
