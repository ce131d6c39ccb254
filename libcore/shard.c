/* shard.c - writing and mmap-reading shard files (man 5 tn-shard).
 * The writer streams tokens straight to the temporary file and spools the
 * document index to an unlinked scratch file beside it, so memory stays
 * constant however many documents a shard holds; the header is written
 * last, over the zeroed first page. */
#include "shard.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define IDX_BUF 8192

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "shards are little-endian and read in place");

struct tn_shard_writer {
	struct tn_out out;
	struct tn_stream_info info;
	XXH3_state_t *payload_hash, *index_hash;
	uint64_t tokens, docs;
	int idx_fd;
	uint8_t idx_buf[IDX_BUF];
	size_t idx_len;
	uint8_t *pack;
	size_t pack_cap;
};

static int idx_flush(struct tn_shard_writer *w)
{
	int rc = tn_write_all(w->idx_fd, w->idx_buf, w->idx_len, w->out.path);
	w->idx_len = 0;
	return rc;
}

static int idx_push(struct tn_shard_writer *w, uint64_t off)
{
	if (w->idx_len == IDX_BUF) {
		int rc = idx_flush(w);
		if (rc)
			return rc;
	}
	tn_put64(w->idx_buf + w->idx_len, off);
	XXH3_64bits_update(w->index_hash, w->idx_buf + w->idx_len, 8);
	w->idx_len += 8;
	return TN_OK;
}

int tn_shard_writer_new(struct tn_shard_writer **wp, const char *path,
			const struct tn_stream_info *info)
{
	struct tn_shard_writer *w = tn_calloc(1, sizeof *w);
	if (!w)
		return TN_ENOMEM;
	w->idx_fd = -1;
	w->out.fd = -1;
	w->info = *info;
	int rc = tn_out_open(&w->out, path);
	if (rc) {
		free(w);
		return rc;
	}
	size_t n = strlen(path) + 16;
	char *idx_path = tn_malloc(n);
	if (!idx_path) {
		tn_shard_writer_free(w);
		return TN_ENOMEM;
	}
	snprintf(idx_path, n, "%s.idx-XXXXXX", path);
	w->idx_fd = mkstemp(idx_path);
	if (w->idx_fd < 0)
		rc = tn_fail_errno("%s: cannot create index scratch file", path);
	else
		unlink(idx_path); /* anonymous: nothing is left behind if we die */
	free(idx_path);
	w->payload_hash = XXH3_createState();
	w->index_hash = XXH3_createState();
	if (!rc && (!w->payload_hash || !w->index_hash))
		rc = tn_fail(TN_ENOMEM, "out of memory");
	if (!rc) {
		XXH3_64bits_reset(w->payload_hash);
		XXH3_64bits_reset(w->index_hash);
		static const uint8_t zero_page[TN_SHARD_PAYLOAD_OFFSET];
		rc = tn_out_write(&w->out, zero_page, sizeof zero_page);
	}
	if (!rc)
		rc = idx_push(w, 0);
	if (rc) {
		tn_shard_writer_free(w);
		return rc;
	}
	*wp = w;
	return TN_OK;
}

int tn_shard_append(struct tn_shard_writer *w, const uint32_t *tok, size_t n)
{
	size_t bytes = n * w->info.width;
	if (bytes > w->pack_cap) {
		uint8_t *p = tn_realloc(w->pack, bytes);
		if (!p)
			return TN_ENOMEM;
		w->pack = p;
		w->pack_cap = bytes;
	}
	uint32_t max = 0;
	if (w->info.width == 2) {
		uint16_t *d = (uint16_t *)w->pack; /* x86-64 and aarch64: little-endian */
		for (size_t i = 0; i < n; i++) {
			d[i] = (uint16_t)tok[i];
			max = tok[i] > max ? tok[i] : max;
		}
	} else {
		memcpy(w->pack, tok, bytes);
		for (size_t i = 0; i < n; i++)
			max = tok[i] > max ? tok[i] : max;
	}
	if (n > 0 && max >= w->info.vocab_size)
		return tn_fail(TN_EDATA, "token id %u is not below the vocabulary size %u",
			       max, w->info.vocab_size);
	XXH3_64bits_update(w->payload_hash, w->pack, bytes);
	w->tokens += n;
	return tn_out_write(&w->out, w->pack, bytes);
}

int tn_shard_append_raw(struct tn_shard_writer *w, const uint8_t *tok, size_t n)
{
	uint32_t max = tn_tokens_max(tok, n, w->info.width);
	if (n > 0 && max >= w->info.vocab_size)
		return tn_fail(TN_EDATA, "token id %u is not below the vocabulary size %u",
			       max, w->info.vocab_size);
	XXH3_64bits_update(w->payload_hash, tok, n * w->info.width);
	w->tokens += n;
	return tn_out_write(&w->out, tok, n * w->info.width);
}

int tn_shard_end_doc(struct tn_shard_writer *w)
{
	w->docs++;
	return idx_push(w, w->tokens);
}

uint64_t tn_shard_writer_tokens(const struct tn_shard_writer *w) { return w->tokens; }
uint64_t tn_shard_writer_docs(const struct tn_shard_writer *w) { return w->docs; }

static void header_encode(const struct tn_shard_header *h, uint8_t b[TN_SHARD_HEADER_USED])
{
	memset(b, 0, TN_SHARD_HEADER_USED);
	memcpy(b, TN_SHARD_MAGIC, 8);
	tn_put32(b + 8, TN_SHARD_VERSION);
	tn_put32(b + 12, h->info.width);
	tn_put32(b + 16, h->info.vocab_size);
	memcpy(b + 24, h->info.fingerprint, 16);
	tn_put64(b + 40, h->n_tokens);
	tn_put64(b + 48, h->n_docs);
	tn_put64(b + 56, h->payload_offset);
	tn_put64(b + 64, h->index_offset);
	tn_put64(b + 72, h->file_size);
	tn_put64(b + 80, h->payload_xxh3);
	tn_put64(b + 88, h->index_xxh3);
	tn_put64(b + 120, XXH3_64bits(b, 120));
}

static int copy_index(struct tn_shard_writer *w)
{
	int rc = idx_flush(w);
	if (rc)
		return rc;
	if (lseek(w->idx_fd, 0, SEEK_SET) < 0)
		return tn_fail_errno("%s: index scratch file", w->out.path);
	uint64_t left = 8 * (w->docs + 1), off = 0;
	while (left > 0) {
		size_t take = (size_t)TN_MIN(left, (uint64_t)IDX_BUF);
		rc = tn_pread_all(w->idx_fd, w->idx_buf, take, off, w->out.path);
		if (!rc)
			rc = tn_out_write(&w->out, w->idx_buf, take);
		if (rc)
			return rc;
		off += take;
		left -= take;
	}
	return TN_OK;
}

int tn_shard_writer_finish(struct tn_shard_writer *w, struct tn_shard_header *h)
{
	memset(h, 0, sizeof *h);
	h->info = w->info;
	h->n_tokens = w->tokens;
	h->n_docs = w->docs;
	h->payload_offset = TN_SHARD_PAYLOAD_OFFSET;
	uint64_t end = TN_SHARD_PAYLOAD_OFFSET + w->tokens * w->info.width;
	h->index_offset = (end + 7) & ~(uint64_t)7;
	h->file_size = h->index_offset + 8 * (w->docs + 1);
	h->payload_xxh3 = XXH3_64bits_digest(w->payload_hash);
	h->index_xxh3 = XXH3_64bits_digest(w->index_hash);
	static const uint8_t pad[8];
	int rc = tn_out_write(&w->out, pad, h->index_offset - end);
	if (!rc)
		rc = copy_index(w);
	if (!rc)
		rc = tn_out_flush(&w->out);
	uint8_t b[TN_SHARD_HEADER_USED];
	header_encode(h, b);
	h->header_xxh3 = tn_le64(b + 120);
	if (!rc && pwrite(w->out.fd, b, sizeof b, 0) != (ssize_t)sizeof b)
		rc = tn_fail_errno("%s: cannot write header", w->out.path);
	if (!rc)
		rc = tn_out_commit(&w->out);
	return rc;
}

void tn_shard_writer_free(struct tn_shard_writer *w)
{
	if (!w)
		return;
	tn_out_abort(&w->out);
	if (w->idx_fd >= 0)
		close(w->idx_fd);
	if (w->payload_hash)
		XXH3_freeState(w->payload_hash);
	if (w->index_hash)
		XXH3_freeState(w->index_hash);
	free(w->pack);
	free(w);
}

/* ---- reading ---- */

static int bad(const struct tn_shard *s, uint64_t off, const char *what)
{
	return tn_fail(TN_EDATA, "%s: offset %llu: %s", s->path, (unsigned long long)off, what);
}

static int check_header(struct tn_shard *s, uint64_t size)
{
	const uint8_t *b = s->map;
	if (size < TN_SHARD_HEADER_USED || memcmp(b, TN_SHARD_MAGIC, 8) != 0)
		return bad(s, 0, size < 8 ? "truncated: too short for a shard" : "not a tn shard (bad magic)");
	if (tn_le64(b + 120) != XXH3_64bits(b, 120))
		return bad(s, 120, "header checksum mismatch");
	if (tn_le32(b + 8) != TN_SHARD_VERSION)
		return tn_fail(TN_EDATA, "%s: offset 8: unsupported shard version %u (this tn reads %u)",
			       s->path, tn_le32(b + 8), TN_SHARD_VERSION);
	struct tn_shard_header *h = &s->h;
	h->info.width = tn_le32(b + 12);
	h->info.vocab_size = tn_le32(b + 16);
	memcpy(h->info.fingerprint, b + 24, 16);
	h->n_tokens = tn_le64(b + 40);
	h->n_docs = tn_le64(b + 48);
	h->payload_offset = tn_le64(b + 56);
	h->index_offset = tn_le64(b + 64);
	h->file_size = tn_le64(b + 72);
	h->payload_xxh3 = tn_le64(b + 80);
	h->index_xxh3 = tn_le64(b + 88);
	h->header_xxh3 = tn_le64(b + 120);
	if ((h->info.width != 2 && h->info.width != 4) || h->info.vocab_size == 0 ||
	    (h->info.width == 2 && h->info.vocab_size > 65536) || tn_le32(b + 20) != 0)
		return bad(s, 12, "invalid token width or vocabulary size");
	if (h->payload_offset != TN_SHARD_PAYLOAD_OFFSET || h->n_tokens > (UINT64_MAX >> 3) ||
	    h->n_docs > (UINT64_MAX >> 4))
		return bad(s, 40, "invalid counts or offsets");
	uint64_t end = h->payload_offset + h->n_tokens * h->info.width;
	if (h->index_offset != ((end + 7) & ~(uint64_t)7) ||
	    h->file_size != h->index_offset + 8 * (h->n_docs + 1))
		return bad(s, 64, "inconsistent offsets");
	if (size != h->file_size)
		return tn_fail(TN_EDATA, "%s: file is %llu bytes, its header says %llu (%s)", s->path,
			       (unsigned long long)size, (unsigned long long)h->file_size,
			       size < h->file_size ? "truncated" : "trailing data");
	for (size_t i = TN_SHARD_HEADER_USED; i < TN_SHARD_PAYLOAD_OFFSET; i++)
		if (b[i])
			return bad(s, i, "non-zero byte in the header padding");
	for (uint64_t i = end; i < h->index_offset; i++)
		if (b[i])
			return bad(s, i, "non-zero byte in the payload padding");
	return TN_OK;
}

static int check_index(struct tn_shard *s)
{
	const struct tn_shard_header *h = &s->h;
	if (XXH3_64bits(s->index, 8 * (h->n_docs + 1)) != h->index_xxh3)
		return bad(s, h->index_offset, "document index checksum mismatch");
	uint64_t prev = 0;
	for (uint64_t i = 0; i <= h->n_docs; i++) {
		uint64_t v = tn_shard_doc_offset(s, i);
		if ((i == 0 && v != 0) || v < prev || v > h->n_tokens ||
		    (i == h->n_docs && v != h->n_tokens))
			return bad(s, h->index_offset + 8 * i, "document index out of order");
		prev = v;
	}
	return TN_OK;
}

static int check_payload(struct tn_shard *s)
{
	const struct tn_shard_header *h = &s->h;
	size_t bytes = h->n_tokens * h->info.width;
	if (XXH3_64bits(s->tokens, bytes) != h->payload_xxh3)
		return bad(s, h->payload_offset, "token payload checksum mismatch");
	uint32_t vocab = h->info.vocab_size;
	if (tn_tokens_max(s->tokens, h->n_tokens, h->info.width) < vocab)
		return TN_OK;
	for (uint64_t i = 0;; i++) {
		uint32_t v[1];
		tn_shard_tokens(s, i, 1, v);
		if (v[0] >= vocab)
			return tn_fail(TN_EDATA, "%s: offset %llu: token id %u is not below the vocabulary size %u",
				       s->path, (unsigned long long)(h->payload_offset + i * h->info.width),
				       v[0], vocab);
	}
}

int tn_shard_open(struct tn_shard *s, const char *path, enum tn_shard_check check)
{
	memset(s, 0, sizeof *s);
	s->path = tn_strdup(path);
	if (!s->path)
		return TN_ENOMEM;
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int rc = tn_fail_errno("%s: cannot open", path);
		if (fd >= 0)
			close(fd);
		tn_shard_close(s);
		return rc;
	}
	int rc = TN_OK;
	if (!S_ISREG(st.st_mode))
		rc = tn_fail(TN_EDATA, "%s: not a regular file", path);
	else if (st.st_size < TN_SHARD_HEADER_USED)
		rc = tn_fail(TN_EDATA, "%s: truncated: %lld bytes is too short for a shard", path,
			     (long long)st.st_size);
	if (!rc) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			rc = tn_fail_errno("%s: cannot map", path);
		else {
			s->map = m;
			s->map_len = (size_t)st.st_size;
		}
	}
	close(fd);
	if (!rc)
		rc = check_header(s, (uint64_t)st.st_size);
	if (!rc) {
		s->tokens = s->map + s->h.payload_offset;
		s->index = s->map + s->h.index_offset;
		rc = check_index(s);
	}
	if (!rc && check == TN_SHARD_CHECK_ALL)
		rc = check_payload(s);
	if (rc)
		tn_shard_close(s);
	return rc;
}

void tn_shard_tokens(const struct tn_shard *s, uint64_t start, size_t n, uint32_t *out)
{
	if (s->h.info.width == 2) {
		const uint16_t *t = (const uint16_t *)s->tokens + start;
		for (size_t i = 0; i < n; i++)
			out[i] = t[i];
	} else {
		memcpy(out, s->tokens + 4 * start, 4 * n);
	}
}

void tn_shard_close(struct tn_shard *s)
{
	if (s->map)
		munmap((void *)s->map, s->map_len);
	free(s->path);
	memset(s, 0, sizeof *s);
}

int tn_is_shard_file(const char *path)
{
	uint8_t m[8];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, m, 8);
	close(fd);
	return n == 8 && memcmp(m, TN_SHARD_MAGIC, 8) == 0;
}
