/* llmc.c - reading and writing llm.c .bin token files. Reading splits the
 * token run into documents at end-of-text tokens, which stay at the start
 * of their document so that import then export gives back the same bytes. */
#include "llmc.h"
#include "util.h"

#include <string.h>
#include <sys/stat.h>

int tn_llmc_header(uint8_t h[TN_LLMC_HEADER_BYTES], int version, uint64_t n_tokens)
{
	if (n_tokens > INT32_MAX)
		return tn_fail(TN_EDATA, "%llu tokens exceed the llm.c limit of %d per file",
			       (unsigned long long)n_tokens, INT32_MAX);
	memset(h, 0, TN_LLMC_HEADER_BYTES);
	tn_put32(h, TN_LLMC_MAGIC);
	tn_put32(h + 4, (uint32_t)version);
	tn_put32(h + 8, (uint32_t)n_tokens);
	return TN_OK;
}

int tn_llmc_open(struct tn_llmc_reader *r, const char *path, uint32_t vocab_size, int64_t eot)
{
	memset(r, 0, sizeof *r);
	r->vocab_size = vocab_size;
	r->eot = eot;
	int rc = tn_in_open(&r->in, path);
	if (rc)
		return rc;
	uint8_t h[TN_LLMC_HEADER_BYTES];
	size_t got;
	rc = tn_in_read(&r->in, h, sizeof h, &got);
	if (!rc && got < sizeof h)
		rc = tn_fail(TN_EDATA, "%s: offset %zu: truncated llm.c header", path, got);
	if (!rc && tn_le32(h) != TN_LLMC_MAGIC)
		rc = tn_fail(TN_EDATA, "%s: offset 0: not an llm.c token file (magic %u, expected %u)",
			     path, tn_le32(h), TN_LLMC_MAGIC);
	if (!rc) {
		r->version = (int)tn_le32(h + 4);
		r->n_tokens = tn_le32(h + 8);
		if (r->version != 1 && r->version != 2)
			rc = tn_fail(TN_EDATA, "%s: offset 4: unknown llm.c version %d (1 and 2 are known)",
				     path, r->version);
		else if (tn_le32(h + 8) > INT32_MAX)
			rc = tn_fail(TN_EDATA, "%s: offset 8: negative token count", path);
	}
	struct stat st;
	if (!rc && fstat(r->in.fd, &st) == 0 && S_ISREG(st.st_mode)) {
		uint64_t want = TN_LLMC_HEADER_BYTES + r->n_tokens * (r->version == 1 ? 2u : 4u);
		if ((uint64_t)st.st_size != want)
			rc = tn_fail(TN_EDATA, "%s: file is %llu bytes, its header says %llu (%s)", path,
				     (unsigned long long)st.st_size, (unsigned long long)want,
				     (uint64_t)st.st_size < want ? "truncated" : "trailing data");
	}
	if (rc)
		tn_in_close(&r->in);
	return rc;
}

static int next_token(struct tn_llmc_reader *r, uint32_t *t)
{
	if (r->has_pending) {
		r->has_pending = 0;
		*t = r->pending;
		return TN_OK;
	}
	size_t w = r->version == 1 ? 2 : 4, got;
	uint8_t b[4];
	uint64_t at = r->in.offset;
	int rc = tn_in_read(&r->in, b, w, &got);
	if (rc)
		return rc;
	if (got < w)
		return tn_fail(TN_EDATA, "%s: offset %llu: truncated: the header promised %llu tokens",
			       r->in.path, (unsigned long long)at, (unsigned long long)r->n_tokens);
	*t = w == 2 ? (uint32_t)b[0] | (uint32_t)b[1] << 8 : tn_le32(b);
	if (*t >= r->vocab_size)
		return tn_fail(TN_EDATA, "%s: offset %llu: token id %u is not below the vocabulary size %u",
			       r->in.path, (unsigned long long)at, *t, r->vocab_size);
	return TN_OK;
}

int tn_llmc_read(struct tn_llmc_reader *r, uint32_t *buf, size_t cap, size_t *n,
		 int *doc_end, int *eos)
{
	*n = 0;
	*doc_end = 0;
	*eos = 0;
	while (*n < cap) {
		if (r->read == r->n_tokens && !r->has_pending) {
			if (r->in_doc)
				*doc_end = 1;
			else
				*eos = 1;
			r->in_doc = 0;
			return TN_OK;
		}
		uint32_t t = 0;
		int from_pending = r->has_pending, rc = next_token(r, &t);
		if (rc)
			return rc;
		r->read += !from_pending;
		if ((int64_t)t == r->eot && r->in_doc) {
			r->pending = t;
			r->has_pending = 1;
			r->in_doc = 0;
			*doc_end = 1;
			return TN_OK;
		}
		buf[(*n)++] = t;
		r->in_doc = 1;
	}
	return TN_OK;
}

void tn_llmc_close(struct tn_llmc_reader *r)
{
	tn_in_close(&r->in);
}
