/* tokenizer.c - kind detection, loading, and the two front ends (byte-level
 * and SentencePiece-style) that turn text into initial symbols for the BPE
 * engine. Encoding state is per thread (tn_tok_state); a loaded tokenizer
 * is read-only and shared by all threads. */
#include "tokenizer.h"
#include "io.h"
#include "util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <xxhash.h>

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's escaped space */

static const char *const kind_names[] = { "auto", "gpt2", "tiktoken", "hf", "spm" };

const char *tn_tok_kind_name(enum tn_tok_kind k) { return kind_names[k]; }

int tn_tok_kind_parse(const char *s)
{
	for (size_t i = 0; i < TN_ARRAY_LEN(kind_names); i++)
		if (strcmp(s, kind_names[i]) == 0)
			return (int)i;
	return -1;
}

uint32_t tn_gpt2_byte_to_cp(uint8_t b)
{
	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
		return b;
	/* the other 68 bytes, in order, get 256, 257, ... */
	uint32_t n = 0;
	for (uint32_t c = 0; c < b; c++)
		if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
			n++;
	return 256 + n;
}

long tn_gpt2_unprintable(const char *s, size_t len, uint8_t *out)
{
	static int16_t cp_to_byte[324];
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		int16_t tab[324];
		memset(tab, 0xff, sizeof tab);
		for (int b = 0; b < 256; b++)
			tab[tn_gpt2_byte_to_cp((uint8_t)b)] = (int16_t)b;
		memcpy(cp_to_byte, tab, sizeof tab);
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	size_t i = 0, o = 0;
	while (i < len) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i,
						      (utf8proc_ssize_t)(len - i), &cp);
		if (k <= 0 || cp < 0 || cp >= 324 || cp_to_byte[cp] < 0)
			return -1;
		out[o++] = (uint8_t)cp_to_byte[cp];
		i += (size_t)k;
	}
	return (long)o;
}

int tn_tokenizer_add_special(struct tn_tokenizer *t, const char *text, uint32_t id)
{
	struct tn_special *s = tn_realloc(t->specials, (t->n_specials + 1) * sizeof *s);
	if (!s)
		return TN_ENOMEM;
	t->specials = s;
	char *copy = tn_strdup(text);
	if (!copy)
		return TN_ENOMEM;
	s[t->n_specials++] = (struct tn_special){ copy, id };
	return TN_OK;
}

uint32_t tn_tokenizer_token_id(const struct tn_tokenizer *t, const char *text)
{
	for (size_t i = 0; i < t->n_specials; i++)
		if (strcmp(t->specials[i].text, text) == 0)
			return t->specials[i].id;
	if (t->byte_level)
		return tn_bpe_lookup(t->bpe, text, strlen(text));
	/* SentencePiece-style vocabularies store spaces as U+2581 */
	size_t n = strlen(text), o = 0;
	char *esc = malloc(3 * n + 1);
	if (!esc)
		return TN_BPE_NONE;
	for (size_t i = 0; i < n; i++) {
		if (text[i] == ' ') {
			memcpy(esc + o, SPACE_MARK, 3);
			o += 3;
		} else {
			esc[o++] = text[i];
		}
	}
	uint32_t id = tn_bpe_lookup(t->bpe, esc, o);
	free(esc);
	return id;
}

size_t tn_tokenizer_user_match(const struct tn_tokenizer *t, const uint8_t *p, size_t n)
{
	if (t->n_user == 0 || n == 0 || !(t->user_first[p[0] >> 6] >> (p[0] & 63) & 1))
		return 0;
	size_t best = 0;
	for (size_t i = 0; i < t->n_user; i++) {
		size_t k = strlen(t->user_pieces[i]);
		if (k > best && k <= n && memcmp(p, t->user_pieces[i], k) == 0)
			best = k;
	}
	return best;
}

/* ---- decoding ---- */

static int dec_put(struct tn_tokenizer *t, uint32_t id, const uint8_t *p, size_t n,
		   size_t *fill, size_t *cap)
{
	if (*fill + n > *cap) {
		size_t c = (*cap + n) * 2;
		uint8_t *b = tn_realloc(t->dec_blob, c);
		if (!b)
			return TN_ENOMEM;
		t->dec_blob = b;
		*cap = c;
	}
	memcpy(t->dec_blob + *fill, p, n);
	t->dec_off[id] = *fill;
	t->dec_len[id] = (uint32_t)n;
	*fill += n;
	return TN_OK;
}

/* A SentencePiece piece as text: U+2581 -> ' '. */
static int dec_piece(struct tn_tokenizer *t, uint32_t id, const uint8_t *p, size_t n,
		     size_t *fill, size_t *cap)
{
	uint8_t *tmp = tn_malloc(n + 1);
	if (!tmp)
		return TN_ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && memcmp(p + i, SPACE_MARK, 3) == 0) {
			tmp[o++] = ' ';
			i += 3;
		} else {
			tmp[o++] = p[i++];
		}
	}
	int rc = dec_put(t, id, tmp, o, fill, cap);
	free(tmp);
	return rc;
}

/* The decode table, from the bpe bytes (byte-level) or from SentencePiece
 * pieces (U+2581 -> ' ', <0xXX> -> the byte). */
static int build_decoder(struct tn_tokenizer *t)
{
	uint32_t n = t->vocab_size;
	t->dec_off = tn_calloc(n, sizeof *t->dec_off);
	t->dec_len = tn_calloc(n, sizeof *t->dec_len);
	if (!t->dec_flags)
		t->dec_flags = tn_calloc(n, sizeof *t->dec_flags);
	if (!t->dec_off || !t->dec_len || !t->dec_flags)
		return TN_ENOMEM;
	size_t fill = 0, cap = 0;
	int rc = TN_OK;
	for (uint32_t id = 0; id < n && !rc; id++) {
		size_t len;
		const uint8_t *p = tn_bpe_bytes(t->bpe, id, &len);
		if (!p || (t->dec_flags[id] & TN_DEC_CONTROL))
			continue;
		if (t->dec_flags[id] & TN_DEC_BYTE)
			continue; /* dec_off holds the byte, set below */
		rc = t->byte_level ? dec_put(t, id, p, len, &fill, &cap)
				   : dec_piece(t, id, p, len, &fill, &cap);
	}
	for (size_t i = 0; i < t->n_specials && !rc; i++) {
		uint32_t id = t->specials[i].id;
		if (id < n && !(t->dec_flags[id] & TN_DEC_CONTROL) && !tn_bpe_bytes(t->bpe, id, &(size_t){ 0 }))
			rc = dec_put(t, id, (const uint8_t *)t->specials[i].text,
				     strlen(t->specials[i].text), &fill, &cap);
	}
	for (int b = 0; b < 256 && !rc && t->byte_fallback; b++) {
		uint32_t id = t->byte_piece[b];
		if (id != TN_BPE_NONE)
			rc = dec_put(t, id, &(uint8_t){ (uint8_t)b }, 1, &fill, &cap);
	}
	return rc;
}

void tn_detok_begin(struct tn_detok *d, const struct tn_tokenizer *t)
{
	d->t = t;
	d->at_start = 1;
}

int tn_detok_run(struct tn_detok *d, const uint32_t *ids, size_t n,
		 uint8_t **buf, size_t *len, size_t *cap)
{
	const struct tn_tokenizer *t = d->t;
	for (size_t i = 0; i < n; i++) {
		uint32_t id = ids[i];
		if (id >= t->vocab_size)
			return tn_fail(TN_EDATA, "token %zu: id %u is outside the vocabulary (%u)",
				       i, id, t->vocab_size);
		const uint8_t *p = t->dec_blob + t->dec_off[id];
		size_t k = t->dec_len[id];
		if (k == 0)
			continue;
		/* the dummy prefix: the first space of a document is not text */
		if (d->at_start && t->add_dummy_prefix && !t->byte_level && p[0] == ' ' &&
		    !(t->dec_flags[id] & TN_DEC_BYTE)) {
			p++;
			k--;
		}
		d->at_start = 0;
		if (*len + k > *cap) {
			size_t c = (*len + k) * 2 + 4096;
			uint8_t *b = tn_realloc(*buf, c);
			if (!b)
				return TN_ENOMEM;
			*buf = b;
			*cap = c;
		}
		memcpy(*buf + *len, p, k);
		*len += k;
	}
	return TN_OK;
}

/* ---- loading ---- */

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = tn_malloc(a + b + 2);
	if (p)
		snprintf(p, a + b + 2, "%s/%s", dir, name);
	return p;
}

static int file_exists(const char *dir, const char *name)
{
	char *p = join(dir, name);
	struct stat st;
	int ok = p && stat(p, &st) == 0;
	free(p);
	return ok;
}

/* The file inside a directory that holds one tokenizer. */
static int pick_in_dir(const char *dir, enum tn_tok_kind *kind, char **file)
{
	static const struct { const char *name; enum tn_tok_kind kind; } pref[] = {
		{ "encoder.json", TN_TOK_GPT2 }, { "tokenizer.json", TN_TOK_HF },
		{ "tokenizer.model", TN_TOK_SPM },
	};
	for (size_t i = 0; i < TN_ARRAY_LEN(pref); i++) {
		if (*kind != TN_TOK_AUTO && *kind != pref[i].kind)
			continue;
		if (file_exists(dir, pref[i].name)) {
			*kind = pref[i].kind;
			*file = pref[i].kind == TN_TOK_GPT2 ? tn_strdup(dir) : join(dir, pref[i].name);
			return *file ? TN_OK : TN_ENOMEM;
		}
	}
	return tn_fail(TN_EDATA, "%s: no tokenizer here (expected encoder.json + vocab.bpe, "
		       "tokenizer.json or tokenizer.model)", dir);
}

static enum tn_tok_kind sniff(const char *path, const uint8_t *d, size_t n)
{
	size_t pl = strlen(path);
	if (pl >= 9 && strcmp(path + pl - 9, ".tiktoken") == 0)
		return TN_TOK_TIKTOKEN;
	size_t i = 0;
	while (i < n && (d[i] == ' ' || d[i] == '\n' || d[i] == '\r' || d[i] == '\t'))
		i++;
	if (i < n && d[i] == '{')
		return TN_TOK_HF;
	if (n > 0 && d[0] == 0x0a) /* protobuf field 1 (pieces), length-delimited */
		return TN_TOK_SPM;
	/* a tiktoken line: base64, a space, a decimal rank */
	const uint8_t *sp = memchr(d, ' ', n < 256 ? n : 256);
	if (sp && sp > d && sp + 1 < d + n && sp[1] >= '0' && sp[1] <= '9')
		return TN_TOK_TIKTOKEN;
	return TN_TOK_AUTO;
}

static int fingerprint_files(struct tn_tokenizer *t, const char *const *files, size_t n)
{
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return tn_fail(TN_ENOMEM, "out of memory");
	XXH3_128bits_reset(st);
	int rc = TN_OK;
	for (size_t i = 0; i < n && !rc; i++) {
		uint8_t *d;
		size_t len;
		rc = tn_read_file(files[i], &d, &len);
		if (!rc) {
			XXH3_128bits_update(st, d, len);
			free(d);
		}
	}
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	memcpy(t->fingerprint, c.digest, 16);
	XXH3_freeState(st);
	return rc;
}

static int load_kind(struct tn_tokenizer *t, const char *file, enum tn_tok_kind kind)
{
	if (kind == TN_TOK_GPT2) {
		char *enc = join(file, "encoder.json"), *voc = join(file, "vocab.bpe");
		int rc = enc && voc ? tn_gpt2_load(t, file) : TN_ENOMEM;
		if (!rc)
			rc = fingerprint_files(t, (const char *[]){ enc, voc }, 2);
		free(enc);
		free(voc);
		return rc;
	}
	uint8_t *d;
	size_t n;
	int rc = tn_read_file(file, &d, &n);
	if (rc)
		return rc;
	if (kind == TN_TOK_AUTO)
		kind = sniff(file, d, n);
	switch (kind) {
	case TN_TOK_TIKTOKEN: rc = tn_tiktoken_load(t, file, d, n); break;
	case TN_TOK_HF: rc = tn_hf_load(t, file, d, n); break;
	case TN_TOK_SPM: rc = tn_spm_load(t, file, d, n); break;
	default:
		rc = tn_fail(TN_EDATA, "%s: not a tokenizer file tn knows (tiktoken ranks, "
			     "tokenizer.json, SentencePiece .model); use --kind", file);
	}
	if (!rc) {
		t->kind = kind;
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, XXH3_128bits(d, n));
		memcpy(t->fingerprint, c.digest, 16);
	}
	free(d);
	return rc;
}

int tn_tokenizer_load(struct tn_tokenizer **out, const char *path, enum tn_tok_kind kind)
{
	struct tn_tokenizer *t = tn_calloc(1, sizeof *t);
	if (!t)
		return TN_ENOMEM;
	t->eot_id = t->unk_id = TN_BPE_NONE;
	char *file = NULL;
	int rc = TN_OK;
	if (is_dir(path))
		rc = pick_in_dir(path, &kind, &file);
	else if (!(file = tn_strdup(path)))
		rc = TN_ENOMEM;
	if (!rc) {
		t->path = file;
		rc = load_kind(t, file, kind);
	}
	if (!rc) {
		if (kind != TN_TOK_AUTO)
			t->kind = kind;
		rc = build_decoder(t);
	}
	if (rc) {
		tn_tokenizer_free(t);
		return rc;
	}
	*out = t;
	return TN_OK;
}

void tn_tokenizer_free(struct tn_tokenizer *t)
{
	if (!t)
		return;
	free(t->path);
	tn_bpe_free(t->bpe);
	tn_pretok_free(t->pretok);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].a);
		free(t->norm[i].b);
	}
	free(t->norm);
	for (size_t i = 0; i < t->n_user; i++)
		free(t->user_pieces[i]);
	free(t->user_pieces);
	free(t->trie);
	free(t->norm_strings);
	free(t->dec_blob);
	free(t->dec_off);
	free(t->dec_len);
	free(t->dec_flags);
	for (size_t i = 0; i < t->n_specials; i++)
		free(t->specials[i].text);
	free(t->specials);
	free(t);
}
