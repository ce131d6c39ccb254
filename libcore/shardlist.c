/* shardlist.c - gathering shards from paths and writing them out again.
 * Every shard is verified in full (checksums and ids) when opened, before
 * any of its tokens are written, so corrupt data never reaches the output. */
#include "shardlist.h"
#include "ids.h"
#include "llmc.h"
#include "manifest.h"
#include "stream.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK 65536

static int add(struct tn_shard_list *l, struct tn_shard *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = l->n == 0 ? TN_OK : tn_stream_info_check(&l->info, &s[i].h.info, s[i].path);
		if (rc)
			return rc;
		if (l->n == 0)
			l->info = s[i].h.info;
		struct tn_shard *grown = tn_realloc(l->shards, (l->n + 1) * sizeof *grown);
		if (!grown)
			return TN_ENOMEM;
		l->shards = grown;
		l->shards[l->n++] = s[i];
		memset(&s[i], 0, sizeof s[i]);
	}
	return TN_OK;
}

static int open_one(struct tn_shard_list *l, const char *path, const char *split)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return tn_fail_errno("%s: cannot open", path);
	struct tn_shard *found = NULL;
	size_t n = 0;
	int rc;
	if (S_ISDIR(st.st_mode)) {
		struct tn_manifest m;
		rc = tn_manifest_read(path, &m);
		if (!rc)
			rc = tn_manifest_open_shards(&m, path, split, TN_SHARD_CHECK_ALL, &found, &n);
		if (!rc && n == 0 && l->n == 0)
			l->info = m.info; /* an empty split still has a vocabulary */
		tn_manifest_free(&m);
	} else {
		found = tn_calloc(1, sizeof *found);
		rc = found ? tn_shard_open(found, path, TN_SHARD_CHECK_ALL) : TN_ENOMEM;
		n = rc ? 0 : 1;
	}
	if (!rc)
		rc = add(l, found, n);
	tn_shards_close(found, n);
	return rc;
}

int tn_shard_list_open(struct tn_shard_list *l, char *const *paths, size_t n,
		       const char *split)
{
	memset(l, 0, sizeof *l);
	for (size_t i = 0; i < n; i++) {
		int rc = open_one(l, paths[i], split);
		if (rc) {
			tn_shard_list_close(l);
			return rc;
		}
	}
	return TN_OK;
}

void tn_shard_list_close(struct tn_shard_list *l)
{
	tn_shards_close(l->shards, l->n);
	memset(l, 0, sizeof *l);
}

/* Call fn on each document in chunks: fn(ctx, tokens, n, doc_start, doc_end). */
typedef int (*doc_fn)(void *ctx, const uint32_t *tok, size_t n, int start, int end);

static int each_doc(const struct tn_shard_list *l, doc_fn fn, void *ctx)
{
	uint32_t *buf = tn_malloc(CHUNK * sizeof *buf);
	if (!buf)
		return TN_ENOMEM;
	int rc = TN_OK;
	for (size_t s = 0; !rc && s < l->n; s++) {
		const struct tn_shard *sh = &l->shards[s];
		for (uint64_t d = 0; !rc && d < sh->h.n_docs; d++) {
			uint64_t at = tn_shard_doc_offset(sh, d), end = tn_shard_doc_offset(sh, d + 1);
			int start = 1;
			do {
				size_t take = (size_t)TN_MIN((uint64_t)CHUNK, end - at);
				tn_shard_tokens(sh, at, take, buf);
				at += take;
				rc = fn(ctx, buf, take, start, at == end);
				start = 0;
			} while (!rc && at < end);
		}
	}
	free(buf);
	return rc;
}

static int stream_doc(void *ctx, const uint32_t *tok, size_t n, int start, int end)
{
	struct tn_stream_writer *w = ctx;
	if (start && end)
		return tn_stream_write_doc(w, tok, n);
	int rc = n ? tn_stream_append(w, tok, n) : TN_OK;
	return !rc && end ? tn_stream_end_doc(w) : rc;
}

int tn_shard_list_write_stream(const struct tn_shard_list *l, struct tn_out *out)
{
	struct tn_stream_writer *w;
	int rc = tn_stream_writer_new(&w, out, &l->info);
	if (rc)
		return rc;
	rc = each_doc(l, stream_doc, w);
	if (!rc)
		rc = tn_stream_finish(w);
	tn_stream_writer_free(w);
	return rc;
}

struct ids_ctx {
	struct tn_out *out;
	char *text;
};

static int ids_doc(void *ctx, const uint32_t *tok, size_t n, int start, int end)
{
	struct ids_ctx *c = ctx;
	size_t len = 0;
	if (!start && n)
		c->text[len++] = ' ';
	len += tn_ids_format(tok, n, c->text + len);
	if (end)
		c->text[len++] = '\n';
	return tn_out_write(c->out, c->text, len);
}

int tn_shard_list_write_ids(const struct tn_shard_list *l, struct tn_out *out)
{
	struct ids_ctx c = {out, tn_malloc((size_t)CHUNK * 11 + 2)};
	if (!c.text)
		return TN_ENOMEM;
	int rc = each_doc(l, ids_doc, &c);
	free(c.text);
	return rc ? rc : tn_out_flush(out);
}

struct llmc_ctx {
	struct tn_out *out;
	int width;
	int64_t eot;
	uint64_t count; /* tokens written */
	int counting;   /* first pass: only count */
	uint8_t *raw;
};

static int llmc_tokens(struct llmc_ctx *c, const uint32_t *tok, size_t n)
{
	c->count += n;
	if (c->counting)
		return TN_OK;
	for (size_t i = 0; i < n; i++) {
		if (c->width == 2) {
			c->raw[2 * i] = (uint8_t)tok[i];
			c->raw[2 * i + 1] = (uint8_t)(tok[i] >> 8);
		} else {
			tn_put32(c->raw + 4 * i, tok[i]);
		}
	}
	return tn_out_write(c->out, c->raw, n * (size_t)c->width);
}

static int llmc_doc(void *ctx, const uint32_t *tok, size_t n, int start, int end)
{
	(void)end;
	struct llmc_ctx *c = ctx;
	if (start && c->eot >= 0 && (n == 0 || tok[0] != (uint32_t)c->eot)) {
		uint32_t e = (uint32_t)c->eot;
		int rc = llmc_tokens(c, &e, 1);
		if (rc)
			return rc;
	}
	return llmc_tokens(c, tok, n);
}

int tn_shard_list_write_llmc(const struct tn_shard_list *l, struct tn_out *out,
			     int version, int64_t eot)
{
	if (version != 1 && version != 2)
		return tn_fail(TN_EUSAGE, "llm.c version must be 1 or 2");
	int width = version == 1 ? 2 : 4;
	if (version == 1 && (l->info.vocab_size > 65536 || eot > 65535))
		return tn_fail(TN_EUSAGE, "a vocabulary of %u needs llm.c version 2 (uint32 tokens)",
			       l->info.vocab_size);
	if (eot >= (int64_t)l->info.vocab_size)
		return tn_fail(TN_EUSAGE, "--eot %lld is not below the vocabulary size %u",
			       (long long)eot, l->info.vocab_size);
	struct llmc_ctx c = {out, width, eot, 0, 1, tn_malloc((size_t)CHUNK * 4)};
	if (!c.raw)
		return TN_ENOMEM;
	int rc = each_doc(l, llmc_doc, &c); /* count first: the header holds the total */
	uint8_t h[TN_LLMC_HEADER_BYTES];
	if (!rc)
		rc = tn_llmc_header(h, version, c.count);
	if (!rc)
		rc = tn_out_write(out, h, sizeof h);
	c.counting = 0;
	c.count = 0;
	if (!rc)
		rc = each_doc(l, llmc_doc, &c);
	free(c.raw);
	return rc;
}
