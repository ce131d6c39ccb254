/* stream.c - writer and reader of the token stream (man 5 tn-tokens).
 * Both sides hash every byte after the header with a running XXH3-64 that
 * restarts after each check record, so a reader detects a flipped byte at
 * the next check record and a cut pipe by the missing end record. */
#include "stream.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define REC_HEAD 8

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "tokens are little-endian and read in place");

uint32_t tn_width_for_vocab(uint32_t vocab_size)
{
	return vocab_size <= 65536 ? 2 : 4;
}

uint32_t tn_tokens_max(const uint8_t *p, size_t n, uint32_t width)
{
	uint32_t max = 0; /* plain loops over aligned arrays: the compiler vectorises them */
	if (width == 2) {
		const uint16_t *t = (const uint16_t *)p;
		for (size_t i = 0; i < n; i++)
			max = t[i] > max ? t[i] : max;
	} else {
		const uint32_t *t = (const uint32_t *)p;
		for (size_t i = 0; i < n; i++)
			max = t[i] > max ? t[i] : max;
	}
	return max;
}

void tn_fingerprint_hex(const uint8_t fp[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", fp[i]);
}

int tn_stream_info_check(const struct tn_stream_info *want,
			 const struct tn_stream_info *got, const char *name)
{
	if (want->vocab_size != got->vocab_size)
		return tn_fail(TN_EDATA, "%s: vocabulary size %u differs from %u of the first input",
			       name, got->vocab_size, want->vocab_size);
	if (memcmp(want->fingerprint, got->fingerprint, 16) != 0) {
		char a[33], b[33];
		tn_fingerprint_hex(got->fingerprint, a);
		tn_fingerprint_hex(want->fingerprint, b);
		return tn_fail(TN_EDATA, "%s: tokenizer fingerprint %s differs from %s of the first input",
			       name, a, b);
	}
	return TN_OK;
}

/* ---- writer ---- */

struct tn_stream_writer {
	struct tn_out *out;
	struct tn_stream_info info;
	XXH3_state_t *hash;
	uint64_t since_check; /* bytes hashed since the last check record */
	uint64_t docs, tokens;
	int doc_open;
	uint8_t *pack; /* tokens converted to the on-disk width */
};

static int w_bytes(struct tn_stream_writer *w, const void *p, size_t n)
{
	XXH3_64bits_update(w->hash, p, n);
	w->since_check += n;
	return tn_out_write(w->out, p, n);
}

static int w_head(struct tn_stream_writer *w, uint32_t type, uint32_t count)
{
	uint8_t head[REC_HEAD];
	tn_put32(head, type);
	tn_put32(head + 4, count);
	return w_bytes(w, head, sizeof head);
}

static int w_digest(struct tn_stream_writer *w)
{
	uint8_t d[8];
	tn_put64(d, XXH3_64bits_digest(w->hash));
	XXH3_64bits_reset(w->hash);
	w->since_check = 0;
	return tn_out_write(w->out, d, sizeof d);
}

static int w_check(struct tn_stream_writer *w)
{
	int rc = w_head(w, TN_REC_CHECK, 0);
	return rc ? rc : w_digest(w);
}

int tn_stream_writer_new(struct tn_stream_writer **wp, struct tn_out *out,
			 const struct tn_stream_info *info)
{
	if (info->width != 2 && info->width != 4)
		return tn_fail(TN_EUSAGE, "token width must be 2 or 4, not %u", info->width);
	if (info->vocab_size == 0 || (info->width == 2 && info->vocab_size > 65536))
		return tn_fail(TN_EUSAGE, "vocabulary size %u does not fit %u-byte tokens",
			       info->vocab_size, info->width);
	struct tn_stream_writer *w = tn_calloc(1, sizeof *w);
	if (!w)
		return TN_ENOMEM;
	w->out = out;
	w->info = *info;
	w->hash = XXH3_createState();
	w->pack = tn_malloc((size_t)TN_STREAM_MAX_CHUNK * 4);
	if (!w->hash || !w->pack) {
		tn_stream_writer_free(w);
		return tn_fail(TN_ENOMEM, "out of memory");
	}
	XXH3_64bits_reset(w->hash);
	uint8_t h[TN_STREAM_HEADER_BYTES] = {0};
	memcpy(h, TN_STREAM_MAGIC, 8);
	tn_put32(h + 8, TN_STREAM_VERSION);
	tn_put32(h + 12, info->width);
	tn_put32(h + 16, info->vocab_size);
	memcpy(h + 24, info->fingerprint, 16);
	tn_put64(h + 40, XXH3_64bits(h, 40));
	int rc = tn_out_write(out, h, sizeof h);
	if (rc) {
		tn_stream_writer_free(w);
		return rc;
	}
	*wp = w;
	return TN_OK;
}

static int w_chunk(struct tn_stream_writer *w, uint32_t type, const uint32_t *tok, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (tok[i] >= w->info.vocab_size)
			return tn_fail(TN_EDATA, "token id %u is not below the vocabulary size %u",
				       tok[i], w->info.vocab_size);
	int rc = w_head(w, type, (uint32_t)n);
	if (rc)
		return rc;
	if (w->info.width == 4) {
		for (size_t i = 0; i < n; i++)
			tn_put32(w->pack + 4 * i, tok[i]);
	} else {
		for (size_t i = 0; i < n; i++) {
			w->pack[2 * i] = (uint8_t)tok[i];
			w->pack[2 * i + 1] = (uint8_t)(tok[i] >> 8);
		}
	}
	rc = w_bytes(w, w->pack, n * w->info.width);
	if (!rc && w->since_check >= TN_STREAM_CHECK_BYTES)
		rc = w_check(w);
	return rc;
}

int tn_stream_append(struct tn_stream_writer *w, const uint32_t *tok, size_t n)
{
	w->doc_open = 1;
	while (n > 0) {
		size_t take = TN_MIN(n, (size_t)TN_STREAM_MAX_CHUNK);
		int rc = w_chunk(w, TN_REC_PART, tok, take);
		if (rc)
			return rc;
		w->tokens += take;
		tok += take;
		n -= take;
	}
	return TN_OK;
}

int tn_stream_end_doc(struct tn_stream_writer *w)
{
	w->doc_open = 0;
	w->docs++;
	return w_chunk(w, TN_REC_DOC, NULL, 0);
}

int tn_stream_write_doc(struct tn_stream_writer *w, const uint32_t *tok, size_t n)
{
	/* The last chunk ends the document, saving an empty end record. */
	while (n > TN_STREAM_MAX_CHUNK) {
		int rc = tn_stream_append(w, tok, TN_STREAM_MAX_CHUNK);
		if (rc)
			return rc;
		tok += TN_STREAM_MAX_CHUNK;
		n -= TN_STREAM_MAX_CHUNK;
	}
	int rc = w_chunk(w, TN_REC_DOC, tok, n);
	if (rc)
		return rc;
	w->tokens += n;
	w->docs++;
	w->doc_open = 0;
	return TN_OK;
}

int tn_stream_finish(struct tn_stream_writer *w)
{
	int rc = w->doc_open ? tn_stream_end_doc(w) : TN_OK;
	if (!rc)
		rc = w_head(w, TN_REC_END, 0);
	uint8_t totals[16];
	tn_put64(totals, w->docs);
	tn_put64(totals + 8, w->tokens);
	if (!rc)
		rc = w_bytes(w, totals, sizeof totals);
	if (!rc)
		rc = w_digest(w);
	return rc ? rc : tn_out_flush(w->out);
}

void tn_stream_writer_free(struct tn_stream_writer *w)
{
	if (!w)
		return;
	if (w->hash)
		XXH3_freeState(w->hash);
	free(w->pack);
	free(w);
}

/* ---- reader ---- */

struct tn_stream_reader {
	struct tn_in *in;
	struct tn_stream_info info;
	XXH3_state_t *hash;
	uint64_t docs, tokens;         /* of the current stream, for its end record */
	uint64_t all_docs;             /* over every concatenated stream */
	uint32_t left;                 /* tokens left in the current chunk record */
	int left_ends_doc;             /* the current chunk record ends its document */
	int in_doc;                    /* a part record was read, its document not ended */
	int streams;                   /* headers read so far */
	int done;
	uint8_t raw[1 << 16];
};

static uint64_t r_off(const struct tn_stream_reader *r) { return r->in->offset; }

/* Read exactly n bytes (n <= sizeof raw) into dst, hashing them if asked. */
static int r_exact(struct tn_stream_reader *r, void *dst, size_t n, int hash,
		   const char *what)
{
	uint64_t at = r_off(r);
	size_t got;
	int rc = tn_in_read(r->in, dst, n, &got);
	if (rc)
		return rc;
	if (got < n)
		return tn_fail(TN_EDATA, "%s: offset %llu: truncated %s (stream cut short?)",
			       r->in->path, (unsigned long long)at, what);
	if (hash)
		XXH3_64bits_update(r->hash, dst, n);
	return TN_OK;
}

static int r_header(struct tn_stream_reader *r, const uint8_t first8[8])
{
	uint8_t h[TN_STREAM_HEADER_BYTES];
	uint64_t at = r_off(r) - 8;
	memcpy(h, first8, 8);
	if (memcmp(h, TN_STREAM_MAGIC, 8) != 0)
		return tn_fail(TN_EDATA, "%s: offset %llu: not a tn token stream (bad magic)",
			       r->in->path, (unsigned long long)at);
	int rc = r_exact(r, h + 8, sizeof h - 8, 0, "header");
	if (rc)
		return rc;
	if (tn_le64(h + 40) != XXH3_64bits(h, 40))
		return tn_fail(TN_EDATA, "%s: offset %llu: header checksum mismatch",
			       r->in->path, (unsigned long long)at);
	uint32_t version = tn_le32(h + 8);
	if (version != TN_STREAM_VERSION)
		return tn_fail(TN_EDATA, "%s: offset %llu: unsupported stream version %u (this tn reads %u)",
			       r->in->path, (unsigned long long)at + 8, version, TN_STREAM_VERSION);
	struct tn_stream_info info;
	info.width = tn_le32(h + 12);
	info.vocab_size = tn_le32(h + 16);
	memcpy(info.fingerprint, h + 24, 16);
	if ((info.width != 2 && info.width != 4) || info.vocab_size == 0 ||
	    (info.width == 2 && info.vocab_size > 65536) || tn_le32(h + 20) != 0)
		return tn_fail(TN_EDATA, "%s: offset %llu: invalid header (width %u, vocabulary %u)",
			       r->in->path, (unsigned long long)at, info.width, info.vocab_size);
	if (r->streams > 0) {
		rc = tn_stream_info_check(&r->info, &info, r->in->path);
		if (rc)
			return rc;
	}
	r->info = info;
	r->streams++;
	r->docs = r->tokens = 0;
	XXH3_64bits_reset(r->hash);
	return TN_OK;
}

int tn_stream_reader_new(struct tn_stream_reader **rp, struct tn_in *in)
{
	struct tn_stream_reader *r = tn_calloc(1, sizeof *r);
	if (!r)
		return TN_ENOMEM;
	r->in = in;
	r->hash = XXH3_createState();
	if (!r->hash) {
		free(r);
		return tn_fail(TN_ENOMEM, "out of memory");
	}
	uint8_t m[8];
	size_t got;
	int rc = tn_in_read(in, m, 8, &got);
	if (!rc && got == 0)
		rc = tn_fail(TN_EDATA, "%s: empty input, expected a tn token stream", in->path);
	else if (!rc && got < 8)
		rc = tn_fail(TN_EDATA, "%s: offset 0: truncated header", in->path);
	if (!rc)
		rc = r_header(r, m);
	if (rc) {
		tn_stream_reader_free(r);
		return rc;
	}
	*rp = r;
	return TN_OK;
}

const struct tn_stream_info *tn_stream_reader_info(const struct tn_stream_reader *r)
{
	return &r->info;
}

uint64_t tn_stream_reader_docs(const struct tn_stream_reader *r) { return r->all_docs; }

static int r_digest(struct tn_stream_reader *r, uint64_t at)
{
	uint8_t d[8];
	uint64_t want = XXH3_64bits_digest(r->hash);
	int rc = r_exact(r, d, 8, 0, "checksum");
	if (rc)
		return rc;
	if (tn_le64(d) != want)
		return tn_fail(TN_EDATA, "%s: offset %llu: checksum mismatch: the data before it is corrupt",
			       r->in->path, (unsigned long long)at);
	XXH3_64bits_reset(r->hash);
	return TN_OK;
}

static int r_end(struct tn_stream_reader *r, uint64_t at)
{
	uint8_t t[16];
	int rc = r_exact(r, t, 16, 1, "end record");
	if (!rc)
		rc = r_digest(r, at);
	if (rc)
		return rc;
	if (tn_le64(t) != r->docs || tn_le64(t + 8) != r->tokens)
		return tn_fail(TN_EDATA, "%s: offset %llu: end record counts %llu documents and %llu tokens, the stream held %llu and %llu",
			       r->in->path, (unsigned long long)at,
			       (unsigned long long)tn_le64(t), (unsigned long long)tn_le64(t + 8),
			       (unsigned long long)r->docs, (unsigned long long)r->tokens);
	/* Another stream may follow; otherwise the input must end here. */
	uint8_t m[8];
	size_t got;
	rc = tn_in_read(r->in, m, 8, &got);
	if (rc)
		return rc;
	if (got == 0) {
		r->done = 1;
		return TN_OK;
	}
	if (got < 8)
		return tn_fail(TN_EDATA, "%s: offset %llu: trailing bytes after the end record",
			       r->in->path, (unsigned long long)(r_off(r) - got));
	return r_header(r, m);
}

/* Advance to the next chunk record with tokens or a document end. */
static int r_next_record(struct tn_stream_reader *r)
{
	for (;;) {
		uint8_t head[REC_HEAD];
		uint64_t at = r_off(r);
		int rc = r_exact(r, head, REC_HEAD, 1, "record (no end record)");
		if (rc)
			return rc;
		uint32_t type = tn_le32(head), count = tn_le32(head + 4);
		if (type == TN_REC_PART || type == TN_REC_DOC) {
			if (count > TN_STREAM_MAX_CHUNK)
				return tn_fail(TN_EDATA, "%s: offset %llu: chunk of %u tokens exceeds the limit of %u",
					       r->in->path, (unsigned long long)at, count, TN_STREAM_MAX_CHUNK);
			r->left = count;
			r->left_ends_doc = type == TN_REC_DOC;
			r->in_doc = type == TN_REC_PART;
			return TN_OK;
		}
		if (count != 0 || (type != TN_REC_CHECK && type != TN_REC_END))
			return tn_fail(TN_EDATA, "%s: offset %llu: unknown record (type %u, count %u)",
				       r->in->path, (unsigned long long)at, type, count);
		if (type == TN_REC_END && r->in_doc)
			return tn_fail(TN_EDATA, "%s: offset %llu: end record inside an unfinished document",
				       r->in->path, (unsigned long long)at);
		rc = type == TN_REC_CHECK ? r_digest(r, at) : r_end(r, at);
		if (rc || r->done)
			return rc;
	}
}

static int r_tokens(struct tn_stream_reader *r, uint32_t *buf, size_t n)
{
	size_t w = r->info.width;
	while (n > 0) {
		size_t take = TN_MIN(n, sizeof r->raw / w);
		uint64_t at = r_off(r);
		int rc = r_exact(r, r->raw, take * w, 1, "tokens");
		if (rc)
			return rc;
		uint32_t bad = 0;
		if (w == 2)
			for (size_t i = 0; i < take; i++) {
				buf[i] = (uint32_t)r->raw[2 * i] | (uint32_t)r->raw[2 * i + 1] << 8;
				bad |= buf[i] >= r->info.vocab_size;
			}
		else
			for (size_t i = 0; i < take; i++) {
				buf[i] = tn_le32(r->raw + 4 * i);
				bad |= buf[i] >= r->info.vocab_size;
			}
		if (bad)
			for (size_t i = 0; i < take; i++)
				if (buf[i] >= r->info.vocab_size)
					return tn_fail(TN_EDATA, "%s: offset %llu: token id %u is not below the vocabulary size %u",
						       r->in->path, (unsigned long long)(at + i * w),
						       buf[i], r->info.vocab_size);
		buf += take;
		n -= take;
	}
	return TN_OK;
}

/* Position at tokens of the current document (or its end, or the end of
 * input); returns how many tokens of the current record remain. */
static int r_advance(struct tn_stream_reader *r, int *eos)
{
	*eos = 0;
	if (!r->done && r->left == 0 && !r->left_ends_doc) {
		int rc = r_next_record(r);
		if (rc)
			return rc;
	}
	*eos = r->done;
	return TN_OK;
}

static void r_consumed(struct tn_stream_reader *r, size_t n, int *doc_end)
{
	r->left -= (uint32_t)n;
	r->tokens += n;
	*doc_end = 0;
	if (r->left == 0 && r->left_ends_doc) {
		r->left_ends_doc = 0;
		r->docs++;
		r->all_docs++;
		*doc_end = 1;
	}
}

int tn_stream_read(struct tn_stream_reader *r, uint32_t *buf, size_t cap,
		   size_t *n, int *doc_end, int *eos)
{
	*n = 0;
	*doc_end = 0;
	int rc = r_advance(r, eos);
	if (rc || *eos)
		return rc;
	size_t take = TN_MIN(cap, (size_t)r->left);
	if ((rc = r_tokens(r, buf, take)))
		return rc;
	*n = take;
	r_consumed(r, take, doc_end);
	return TN_OK;
}

int tn_stream_read_raw(struct tn_stream_reader *r, const uint8_t **p, size_t cap,
		       size_t *n, int *doc_end, int *eos)
{
	*n = 0;
	*doc_end = 0;
	int rc = r_advance(r, eos);
	if (rc || *eos)
		return rc;
	size_t w = r->info.width, avail;
	size_t take = TN_MIN(TN_MIN(cap, (size_t)r->left), r->in->cap / w);
	uint64_t at = r_off(r);
	if ((rc = tn_in_fill(r->in, take * w, &avail)))
		return rc;
	if (avail < take * w)
		return tn_fail(TN_EDATA, "%s: offset %llu: truncated tokens (stream cut short?)",
			       r->in->path, (unsigned long long)at);
	const uint8_t *b = r->in->buf + r->in->pos;
	XXH3_64bits_update(r->hash, b, take * w);
	if (take && tn_tokens_max(b, take, (uint32_t)w) >= r->info.vocab_size) {
		uint32_t *one = tn_malloc(take * sizeof *one);
		rc = one ? r_tokens(r, one, take) : TN_ENOMEM; /* finds and reports the id */
		free(one);
		return rc;
	}
	r->in->pos += take * w;
	r->in->offset += take * w;
	*p = b;
	*n = take;
	r_consumed(r, take, doc_end);
	return TN_OK;
}

int tn_stream_read_doc(struct tn_stream_reader *r, uint32_t **buf, size_t *cap,
		       size_t *n, int *eos)
{
	*n = 0;
	for (;;) {
		if (*cap - *n < 4096) {
			size_t ncap = *cap ? *cap * 2 : 1 << 16;
			uint32_t *nb = tn_realloc(*buf, ncap * sizeof **buf);
			if (!nb)
				return TN_ENOMEM;
			*buf = nb;
			*cap = ncap;
		}
		size_t got;
		int end, rc = tn_stream_read(r, *buf + *n, *cap - *n, &got, &end, eos);
		if (rc)
			return rc;
		*n += got;
		if (end)
			return TN_OK;
		if (*eos) {
			if (*n > 0)
				return tn_fail(TN_EDATA, "%s: document not ended before the end record",
					       r->in->path);
			return TN_OK;
		}
	}
}

void tn_stream_reader_free(struct tn_stream_reader *r)
{
	if (!r)
		return;
	if (r->hash)
		XXH3_freeState(r->hash);
	free(r);
}
