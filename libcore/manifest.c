/* manifest.c - reading and writing manifest.json with jansson.
 * The checksum is computed over the exact bytes written, so readers hash
 * the file as found, not a re-serialisation. */
#include "manifest.h"
#include "io.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SUM_KEY "\"checksum\": \""
#define SUM_ZERO "0000000000000000"

int tn_manifest_add(struct tn_manifest *m, const char *file, const char *split,
		    const struct tn_shard_header *h)
{
	struct tn_manifest_shard *s = tn_realloc(m->shards, (m->n_shards + 1) * sizeof *s);
	if (!s)
		return TN_ENOMEM;
	m->shards = s;
	s += m->n_shards;
	s->file = tn_strdup(file);
	s->split = tn_strdup(split);
	if (!s->file || !s->split) {
		free(s->file);
		free(s->split);
		return TN_ENOMEM;
	}
	s->tokens = h->n_tokens;
	s->docs = h->n_docs;
	s->bytes = h->file_size;
	s->header_xxh3 = h->header_xxh3;
	m->n_shards++;
	return TN_OK;
}

void tn_manifest_totals(const struct tn_manifest *m, const char *split,
			uint64_t *tokens, uint64_t *docs)
{
	*tokens = *docs = 0;
	for (size_t i = 0; i < m->n_shards; i++)
		if (!split || strcmp(split, m->shards[i].split) == 0) {
			*tokens += m->shards[i].tokens;
			*docs += m->shards[i].docs;
		}
}

static json_t *split_totals(const struct tn_manifest *m, const char *split)
{
	uint64_t t, d;
	tn_manifest_totals(m, split, &t, &d);
	return json_pack("{s:I,s:I}", "tokens", (json_int_t)t, "documents", (json_int_t)d);
}

int tn_manifest_write(const char *dir, const struct tn_manifest *m)
{
	char fp[33], sum[17];
	tn_fingerprint_hex(m->info.fingerprint, fp);
	json_t *shards = json_array();
	for (size_t i = 0; shards && i < m->n_shards; i++) {
		const struct tn_manifest_shard *s = &m->shards[i];
		snprintf(sum, sizeof sum, "%016llx", (unsigned long long)s->header_xxh3);
		json_array_append_new(shards, json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}",
			"file", s->file, "split", s->split, "tokens", (json_int_t)s->tokens,
			"documents", (json_int_t)s->docs, "bytes", (json_int_t)s->bytes,
			"header_xxh3", sum));
	}
	json_t *pack = m->pack_json ? json_loads(m->pack_json, 0, NULL) : json_object();
	json_t *root = json_pack("{s:s,s:i,s:i,s:I,s:s,s:{s:o,s:o},s:o,s:o,s:s}",
		"format", "tn-shards", "version", TN_MANIFEST_VERSION,
		"token_width", (int)m->info.width, "vocab_size", (json_int_t)m->info.vocab_size,
		"tokenizer", fp, "splits", "train", split_totals(m, "train"),
		"val", split_totals(m, "val"), "shards", shards,
		"pack", pack ? pack : json_object(), "checksum", SUM_ZERO);
	char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(root);
	if (!text)
		return tn_fail(TN_ENOMEM, "%s: cannot build the manifest", dir);
	size_t len = strlen(text);
	char *at = strstr(text, SUM_KEY SUM_ZERO);
	snprintf(sum, sizeof sum, "%016llx", (unsigned long long)XXH3_64bits(text, len));
	memcpy(at + strlen(SUM_KEY), sum, 16);
	text[len] = '\n'; /* json_dumps' terminator becomes the final newline */
	char *path = tn_path_join(dir, TN_MANIFEST_NAME);
	int rc = path ? tn_write_file_atomic(path, text, len + 1) : TN_ENOMEM;
	free(path);
	free(text);
	return rc;
}

static int verify_checksum(const char *path, char *text, size_t len)
{
	char *at = NULL;
	for (char *p = strstr(text, SUM_KEY); p; p = strstr(p + 1, SUM_KEY))
		at = p;
	if (!at || (size_t)(at - text) + strlen(SUM_KEY) + 16 > len)
		return tn_fail(TN_EDATA, "%s: no checksum field", path);
	char *digits = at + strlen(SUM_KEY), saved[17];
	memcpy(saved, digits, 16);
	saved[16] = 0;
	memcpy(digits, SUM_ZERO, 16);
	char want[17];
	/* The writer hashed the text without its final newline. */
	size_t hashed = len > 0 && text[len - 1] == '\n' ? len - 1 : len;
	snprintf(want, sizeof want, "%016llx", (unsigned long long)XXH3_64bits(text, hashed));
	memcpy(digits, saved, 16);
	if (strcmp(want, saved) != 0)
		return tn_fail(TN_EDATA, "%s: offset %zu: manifest checksum mismatch (the file was changed)",
			       path, (size_t)(digits - text));
	return TN_OK;
}

static int parse_hex64(const char *s, uint64_t *out)
{
	if (!s || strlen(s) != 16)
		return -1;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

static int parse_fingerprint(const char *s, uint8_t fp[16])
{
	uint64_t hi, lo;
	char part[17];
	if (!s || strlen(s) != 32)
		return -1;
	memcpy(part, s, 16);
	part[16] = 0;
	if (parse_hex64(part, &hi) || parse_hex64(s + 16, &lo))
		return -1;
	for (int i = 0; i < 8; i++) {
		fp[i] = (uint8_t)(hi >> (56 - 8 * i));
		fp[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
	return 0;
}

static int parse_shard(const char *path, json_t *js, size_t i, struct tn_manifest *m)
{
	const char *file = NULL, *split = NULL, *sum = NULL;
	json_int_t tokens, docs, bytes;
	json_error_t err;
	if (json_unpack_ex(js, &err, JSON_STRICT, "{s:s,s:s,s:I,s:I,s:I,s:s}", "file", &file,
			   "split", &split, "tokens", &tokens, "documents", &docs, "bytes", &bytes,
			   "header_xxh3", &sum) != 0)
		return tn_fail(TN_EDATA, "%s: shards[%zu]: %s", path, i, err.text);
	struct tn_shard_header h = {0};
	if (tokens < 0 || docs < 0 || bytes < 0 || parse_hex64(sum, &h.header_xxh3) ||
	    strchr(file, '/') || file[0] == '.' ||
	    (strcmp(split, "train") != 0 && strcmp(split, "val") != 0))
		return tn_fail(TN_EDATA, "%s: shards[%zu]: invalid entry", path, i);
	h.n_tokens = (uint64_t)tokens;
	h.n_docs = (uint64_t)docs;
	h.file_size = (uint64_t)bytes;
	return tn_manifest_add(m, file, split, &h);
}

static int parse(const char *path, json_t *root, struct tn_manifest *m)
{
	const char *format, *fp, *sum;
	int version, width;
	json_int_t vocab;
	json_t *splits, *shards, *pack;
	json_error_t err;
	if (json_unpack_ex(root, &err, JSON_STRICT, "{s:s,s:i,s:i,s:I,s:s,s:o,s:o,s:o,s:s}",
			   "format", &format, "version", &version, "token_width", &width,
			   "vocab_size", &vocab, "tokenizer", &fp, "splits", &splits,
			   "shards", &shards, "pack", &pack, "checksum", &sum) != 0)
		return tn_fail(TN_EDATA, "%s: line %d: %s", path, err.line, err.text);
	if (strcmp(format, "tn-shards") != 0)
		return tn_fail(TN_EDATA, "%s: not a tn shard manifest", path);
	if (version != TN_MANIFEST_VERSION)
		return tn_fail(TN_EDATA, "%s: unsupported manifest version %d (this tn reads %d)",
			       path, version, TN_MANIFEST_VERSION);
	if ((width != 2 && width != 4) || vocab <= 0 || vocab > UINT32_MAX ||
	    parse_fingerprint(fp, m->info.fingerprint) || !json_is_array(shards))
		return tn_fail(TN_EDATA, "%s: invalid width, vocabulary, tokenizer or shard list", path);
	m->info.width = (uint32_t)width;
	m->info.vocab_size = (uint32_t)vocab;
	m->pack_json = json_dumps(pack, JSON_COMPACT | JSON_PRESERVE_ORDER);
	for (size_t i = 0; i < json_array_size(shards); i++) {
		int rc = parse_shard(path, json_array_get(shards, i), i, m);
		if (rc)
			return rc;
	}
	return TN_OK;
}

int tn_manifest_read(const char *dir, struct tn_manifest *m)
{
	memset(m, 0, sizeof *m);
	char *path = tn_path_join(dir, TN_MANIFEST_NAME);
	if (!path)
		return TN_ENOMEM;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = tn_read_file(path, &data, &len);
	if (rc == TN_EIO)
		rc = tn_fail(TN_EDATA, "%s: no manifest: not a finished shard directory (%s)",
			     dir, tn_errmsg());
	if (!rc) {
		char *text = (char *)data;
		rc = verify_checksum(path, text, len);
		json_error_t err;
		json_t *root = rc ? NULL : json_loadb(text, len, 0, &err);
		if (!rc && !root)
			rc = tn_fail(TN_EDATA, "%s: line %d column %d: %s", path, err.line,
				     err.column, err.text);
		if (!rc)
			rc = parse(path, root, m);
		json_decref(root);
	}
	free(data);
	free(path);
	if (rc)
		tn_manifest_free(m);
	return rc;
}

void tn_manifest_free(struct tn_manifest *m)
{
	for (size_t i = 0; i < m->n_shards; i++) {
		free(m->shards[i].file);
		free(m->shards[i].split);
	}
	free(m->shards);
	free(m->pack_json);
	memset(m, 0, sizeof *m);
}

static int matches(const struct tn_manifest *m, const struct tn_manifest_shard *e,
		   const struct tn_shard *s)
{
	const struct tn_shard_header *h = &s->h;
	if (h->header_xxh3 != e->header_xxh3 || h->n_tokens != e->tokens ||
	    h->n_docs != e->docs || h->file_size != e->bytes)
		return tn_fail(TN_EDATA, "%s: does not match its manifest entry (replaced or changed?)",
			       s->path);
	return tn_stream_info_check(&m->info, &h->info, s->path);
}

int tn_manifest_open_shards(const struct tn_manifest *m, const char *dir,
			    const char *split, enum tn_shard_check check,
			    struct tn_shard **shards, size_t *n)
{
	*shards = tn_calloc(m->n_shards, sizeof **shards);
	*n = 0;
	if (!*shards)
		return TN_ENOMEM;
	for (size_t i = 0; i < m->n_shards; i++) {
		const struct tn_manifest_shard *e = &m->shards[i];
		if (split && strcmp(split, e->split) != 0)
			continue;
		char *path = tn_path_join(dir, e->file);
		if (!path) {
			tn_shards_close(*shards, *n);
			return TN_ENOMEM;
		}
		int rc = tn_shard_open(&(*shards)[*n], path, check);
		free(path);
		if (!rc) {
			(*n)++;
			rc = matches(m, e, &(*shards)[*n - 1]);
		}
		if (rc) {
			tn_shards_close(*shards, *n);
			*shards = NULL;
			*n = 0;
			return rc;
		}
	}
	return TN_OK;
}

void tn_shards_close(struct tn_shard *shards, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tn_shard_close(&shards[i]);
	free(shards);
}
