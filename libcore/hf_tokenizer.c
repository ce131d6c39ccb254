/* hf_tokenizer.c - Hugging Face tokenizer.json with a BPE model. Two
 * shapes: byte-level (a ByteLevel pre-tokenizer; tokens spelled in GPT-2's
 * printable byte alphabet, stored here as raw bytes) and SentencePiece-style
 * (Metaspace or Prepend/Replace normalizers, U+2581 for spaces, byte
 * fallback). Anything else the file asks for is refused with its name, so
 * that tn never encodes silently differently from the file. */
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK "\xe2\x96\x81"

struct hf {
	const char *path;
	struct tn_tokenizer *t;
	int byte_level;
	const char *split_regex; /* Split pre-tokenizer pattern */
	int use_regex;           /* ByteLevel's own GPT-2 pattern */
};

static const char *str_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int bool_of(json_t *o, const char *key, int dflt)
{
	json_t *v = json_object_get(o, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int unsupported(struct hf *h, const char *what, const char *type)
{
	return tn_fail(TN_EDATA, "%s: %s \"%s\" is not supported", h->path, what,
		       type ? type : "(no type)");
}

static int add_norm(struct tn_tokenizer *t, enum tn_norm_op op, const char *a, const char *b)
{
	struct tn_norm_step *n = tn_realloc(t->norm, (t->n_norm + 1) * sizeof *n);
	if (!n)
		return TN_ENOMEM;
	t->norm = n;
	n[t->n_norm] = (struct tn_norm_step){ op, a ? tn_strdup(a) : NULL, b ? tn_strdup(b) : NULL };
	if ((a && !n[t->n_norm].a) || (b && !n[t->n_norm].b))
		return TN_ENOMEM;
	t->n_norm++;
	return TN_OK;
}

static int parse_normalizer(struct hf *h, json_t *n)
{
	if (!n || json_is_null(n))
		return TN_OK;
	const char *type = str_of(n, "type");
	if (type && strcmp(type, "Sequence") == 0) {
		json_t *v;
		size_t i;
		json_array_foreach(json_object_get(n, "normalizers"), i, v) {
			int rc = parse_normalizer(h, v);
			if (rc)
				return rc;
		}
		return TN_OK;
	}
	static const struct { const char *name; enum tn_norm_op op; } simple[] = {
		{ "NFC", TN_NORM_NFC }, { "NFKC", TN_NORM_NFKC }, { "NFD", TN_NORM_NFD },
		{ "NFKD", TN_NORM_NFKD }, { "Lowercase", TN_NORM_LOWER },
	};
	for (size_t i = 0; type && i < TN_ARRAY_LEN(simple); i++)
		if (strcmp(type, simple[i].name) == 0)
			return add_norm(h->t, simple[i].op, NULL, NULL);
	if (type && strcmp(type, "Prepend") == 0 && str_of(n, "prepend"))
		return add_norm(h->t, TN_NORM_PREPEND, str_of(n, "prepend"), NULL);
	if (type && strcmp(type, "Replace") == 0) {
		const char *from = str_of(json_object_get(n, "pattern"), "String");
		const char *to = str_of(n, "content");
		if (from && *from && to)
			return add_norm(h->t, TN_NORM_REPLACE, from, to);
	}
	return unsupported(h, "normalizer", type);
}

static int parse_pretokenizer(struct hf *h, json_t *p)
{
	if (!p || json_is_null(p))
		return TN_OK;
	struct tn_tokenizer *t = h->t;
	const char *type = str_of(p, "type");
	if (type && strcmp(type, "Sequence") == 0) {
		json_t *v;
		size_t i;
		json_array_foreach(json_object_get(p, "pretokenizers"), i, v) {
			int rc = parse_pretokenizer(h, v);
			if (rc)
				return rc;
		}
		return TN_OK;
	}
	if (type && strcmp(type, "ByteLevel") == 0) {
		h->byte_level = 1;
		h->use_regex = bool_of(p, "use_regex", 1);
		t->add_prefix_space = bool_of(p, "add_prefix_space", 0);
		return TN_OK;
	}
	if (type && strcmp(type, "Split") == 0) {
		const char *re = str_of(json_object_get(p, "pattern"), "Regex");
		const char *beh = str_of(p, "behavior");
		if (re && !h->split_regex && beh && strcmp(beh, "Isolated") == 0 &&
		    !bool_of(p, "invert", 0)) {
			h->split_regex = re;
			return TN_OK;
		}
		return unsupported(h, "Split pre-tokenizer (only one, Regex, Isolated)", re);
	}
	if (type && strcmp(type, "Metaspace") == 0) {
		const char *rep = str_of(p, "replacement"), *scheme = str_of(p, "prepend_scheme");
		if (!rep || strcmp(rep, SPACE_MARK) != 0)
			return unsupported(h, "Metaspace replacement", rep);
		int prefix = scheme ? strcmp(scheme, "never") != 0 : bool_of(p, "add_prefix_space", 1);
		t->escape_spaces = 1;
		t->add_dummy_prefix = prefix ? TN_DUMMY_IF_ABSENT : 0;
		t->split = bool_of(p, "split", 1) ? TN_SPLIT_METASPACE : TN_SPLIT_NONE;
		return TN_OK;
	}
	return unsupported(h, "pre-tokenizer", type);
}

/* A vocabulary or merge string as token bytes. */
static long token_bytes(struct hf *h, const char *s, uint8_t *out)
{
	size_t len = strlen(s);
	if (h->byte_level)
		return tn_gpt2_unprintable(s, len, out);
	memcpy(out, s, len);
	return (long)len;
}

static int load_vocab(struct hf *h, json_t *vocab, json_t *added)
{
	struct tn_tokenizer *t = h->t;
	uint32_t n = 0;
	const char *key;
	json_t *v;
	size_t i;
	json_object_foreach(vocab, key, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 24))
			return tn_fail(TN_EDATA, "%s: vocab \"%s\": id is not an integer in [0, 2^24)",
				       h->path, key);
		n = TN_MAX(n, (uint32_t)json_integer_value(v) + 1);
	}
	json_array_foreach(added, i, v) {
		json_t *id = json_object_get(v, "id");
		if (!json_is_integer(id) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= (1 << 24) || !str_of(v, "content"))
			return tn_fail(TN_EDATA, "%s: added_tokens[%zu]: needs an id and a content",
				       h->path, i);
		n = TN_MAX(n, (uint32_t)json_integer_value(id) + 1);
	}
	if (n == 0)
		return tn_fail(TN_EDATA, "%s: the model's vocab is empty", h->path);
	t->vocab_size = n;
	int rc = tn_bpe_new(&t->bpe, n);
	if (!rc && !(t->dec_flags = tn_calloc(n, sizeof *t->dec_flags)))
		rc = TN_ENOMEM;
	uint8_t buf[1024];
	json_object_foreach(vocab, key, v) {
		if (rc)
			break;
		long m = strlen(key) < sizeof buf ? token_bytes(h, key, buf) : -1;
		if (m < 0)
			return tn_fail(TN_EDATA, "%s: vocab \"%s\" is not a byte-level token",
				       h->path, key);
		if ((rc = tn_bpe_set(t->bpe, (uint32_t)json_integer_value(v), buf, (size_t)m)))
			rc = tn_fail(rc, "%s: %s", h->path, tn_errmsg());
	}
	return rc;
}

static int load_added(struct hf *h, json_t *added)
{
	struct tn_tokenizer *t = h->t;
	json_t *v;
	size_t i;
	json_array_foreach(added, i, v) {
		const char *text = str_of(v, "content");
		uint32_t id = (uint32_t)json_integer_value(json_object_get(v, "id"));
		size_t len;
		if (!bool_of(v, "special", 0))
			return tn_fail(TN_EDATA, "%s: added token \"%s\" is not special; Hugging Face "
				       "splits such tokens out of text, which tn does not do", h->path, text);
		int rc = TN_OK;
		if (!tn_bpe_bytes(t->bpe, id, &len) &&
		    (rc = tn_bpe_set(t->bpe, id, text, strlen(text))))
			return tn_fail(rc, "%s: added token \"%s\": %s", h->path, text, tn_errmsg());
		if ((rc = tn_tokenizer_add_special(t, text, id)))
			return rc;
		if (!h->byte_level)
			t->dec_flags[id] |= TN_DEC_CONTROL;
	}
	static const char *const eot[] = { "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>" };
	for (size_t k = 0; k < TN_ARRAY_LEN(eot) && t->eot_id == TN_BPE_NONE; k++)
		t->eot_id = tn_tokenizer_token_id(t, eot[k]);
	return TN_OK;
}

static int merge_side(struct hf *h, const char *s, size_t len, uint8_t *out, long *m)
{
	char tmp[1024];
	if (len >= sizeof tmp)
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	*m = token_bytes(h, tmp, out);
	return *m < 0 ? -1 : 0;
}

static int load_merges(struct hf *h, json_t *merges)
{
	struct tn_tokenizer *t = h->t;
	uint8_t buf[2048];
	json_t *v;
	size_t i;
	json_array_foreach(merges, i, v) {
		const char *a, *b;
		size_t la, lb;
		if (json_is_string(v)) { /* "a b" */
			a = json_string_value(v);
			const char *sp = strchr(a, ' ');
			if (!sp)
				return tn_fail(TN_EDATA, "%s: merges[%zu]: expected \"left right\"", h->path, i);
			la = (size_t)(sp - a);
			b = sp + 1;
			lb = strlen(b);
		} else if (json_is_array(v) && json_array_size(v) == 2 &&
			   json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
			a = json_string_value(json_array_get(v, 0));
			b = json_string_value(json_array_get(v, 1));
			la = strlen(a);
			lb = strlen(b);
		} else {
			return tn_fail(TN_EDATA, "%s: merges[%zu]: expected \"left right\" or [left, right]",
				       h->path, i);
		}
		long ma, mb;
		if (merge_side(h, a, la, buf, &ma) || merge_side(h, b, lb, buf + ma, &mb))
			return tn_fail(TN_EDATA, "%s: merges[%zu]: bad token text", h->path, i);
		uint32_t l = tn_bpe_lookup(t->bpe, buf, (size_t)ma);
		uint32_t r = tn_bpe_lookup(t->bpe, buf + ma, (size_t)mb);
		uint32_t m = tn_bpe_lookup(t->bpe, buf, (size_t)(ma + mb));
		if (l == TN_BPE_NONE || r == TN_BPE_NONE || m == TN_BPE_NONE)
			return tn_fail(TN_EDATA, "%s: merges[%zu]: \"%.*s\" + \"%.*s\" names a token "
				       "not in the vocab", h->path, i, (int)la, a, (int)lb, b);
		int rc = tn_bpe_add_merge(t->bpe, l, r, (uint32_t)i, m);
		if (rc)
			return rc;
	}
	return TN_OK;
}

static int setup_spm_style(struct hf *h, json_t *model)
{
	struct tn_tokenizer *t = h->t;
	t->byte_fallback = bool_of(model, "byte_fallback", 0);
	const char *unk = str_of(model, "unk_token");
	if (unk)
		t->unk_id = tn_tokenizer_token_id(t, unk);
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		t->byte_piece[b] = tn_bpe_lookup(t->bpe, name, 6);
		if (t->byte_piece[b] != TN_BPE_NONE)
			t->dec_flags[t->byte_piece[b]] |= TN_DEC_BYTE;
		else if (t->byte_fallback)
			return tn_fail(TN_EDATA, "%s: byte_fallback is set but token %s is missing",
				       h->path, name);
	}
	/* a Prepend of U+2581 is SentencePiece's dummy prefix for decoding */
	for (size_t i = 0; i < t->n_norm; i++)
		if (t->norm[i].op == TN_NORM_PREPEND && strcmp(t->norm[i].a, SPACE_MARK) == 0)
			t->add_dummy_prefix = TN_DUMMY_DECODE;
	t->ws_split_safe = 1;
	for (uint32_t id = 0; id < t->vocab_size; id++) {
		size_t len;
		const uint8_t *p = tn_bpe_bytes(t->bpe, id, &len);
		for (size_t i = 1; p && i + 3 <= len; i++)
			if (memcmp(p + i, SPACE_MARK, 3) == 0 &&
			    (i < 3 || memcmp(p + i - 3, SPACE_MARK, 3) != 0))
				t->ws_split_safe = 0;
	}
	return TN_OK;
}

static int load_model(struct hf *h, json_t *root)
{
	json_t *model = json_object_get(root, "model");
	const char *type = str_of(model, "type");
	if (!model || (type && strcmp(type, "BPE") != 0))
		return unsupported(h, "model type", type);
	json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
	if (!json_is_object(vocab) || !json_is_array(merges))
		return tn_fail(TN_EDATA, "%s: model needs a vocab object and a merges array", h->path);
	const char *csp = str_of(model, "continuing_subword_prefix");
	const char *ews = str_of(model, "end_of_word_suffix");
	if ((csp && *csp) || (ews && *ews))
		return unsupported(h, "BPE subword prefix/suffix", csp && *csp ? csp : ews);
	json_t *dropout = json_object_get(model, "dropout");
	if (json_is_number(dropout) && json_number_value(dropout) > 0)
		return unsupported(h, "BPE dropout", "dropout");
	h->t->ignore_merges = bool_of(model, "ignore_merges", 0);
	json_t *added = json_object_get(root, "added_tokens");
	int rc = load_vocab(h, vocab, added);
	if (!rc)
		rc = load_merges(h, merges);
	if (!rc)
		rc = load_added(h, added);
	return rc;
}

int tn_hf_load(struct tn_tokenizer *t, const char *path, const uint8_t *d, size_t n)
{
	json_error_t err;
	json_t *root = json_loadb((const char *)d, n, 0, &err);
	if (!root)
		return tn_fail(TN_EDATA, "%s: line %d: %s", path, err.line, err.text);
	struct hf h = { path, t, 0, NULL, 0 };
	int rc = json_is_object(root) ? TN_OK
				      : tn_fail(TN_EDATA, "%s: not a JSON object", path);
	if (!rc)
		rc = parse_pretokenizer(&h, json_object_get(root, "pre_tokenizer"));
	if (!rc)
		rc = parse_normalizer(&h, json_object_get(root, "normalizer"));
	if (!rc && !h.byte_level && h.split_regex)
		rc = unsupported(&h, "Split pre-tokenizer without ByteLevel", h.split_regex);
	if (!rc)
		rc = load_model(&h, root);
	if (!rc && h.byte_level) {
		rc = tn_gpt2_byte_ids(t, path);
		const char *pat = h.split_regex ? h.split_regex : h.use_regex ? TN_PAT_GPT2 : NULL;
		if (!rc && pat)
			rc = tn_pretok_new(&t->pretok, pat, path);
	} else if (!rc) {
		rc = setup_spm_style(&h, json_object_get(root, "model"));
	}
	json_decref(root);
	return rc;
}
