/* shard.h - the shard file (man 5 tn-shard): what a trainer reads. A
 * 4096-byte header (magic, version, width, vocabulary, tokenizer
 * fingerprint, counts, offsets, xxh3 of payload and index, xxh3 of the
 * header), the tokens page-aligned, then the document index: n_docs + 1
 * little-endian u64 token offsets. Readers mmap the file and check every
 * size and checksum before use. */
#ifndef TN_SHARD_H
#define TN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "stream.h"

#define TN_SHARD_MAGIC "TNSHARD\0"
#define TN_SHARD_VERSION 1
#define TN_SHARD_PAYLOAD_OFFSET 4096
#define TN_SHARD_HEADER_USED 128

struct tn_shard_header {
	struct tn_stream_info info;
	uint64_t n_tokens, n_docs;
	uint64_t payload_offset, index_offset, file_size;
	uint64_t payload_xxh3, index_xxh3, header_xxh3;
};

/* Writing: tokens are appended document by document. */
struct tn_shard_writer;
int tn_shard_writer_new(struct tn_shard_writer **w, const char *path,
			const struct tn_stream_info *info);
int tn_shard_append(struct tn_shard_writer *w, const uint32_t *tok, size_t n);
/* Tokens already in the shard's width, little-endian. */
int tn_shard_append_raw(struct tn_shard_writer *w, const uint8_t *tok, size_t n);
int tn_shard_end_doc(struct tn_shard_writer *w);
uint64_t tn_shard_writer_tokens(const struct tn_shard_writer *w);
uint64_t tn_shard_writer_docs(const struct tn_shard_writer *w);
/* Write index and header, fsync, rename into place; fills *h. */
int tn_shard_writer_finish(struct tn_shard_writer *w, struct tn_shard_header *h);
/* Remove the unfinished file and free (also after finish). */
void tn_shard_writer_free(struct tn_shard_writer *w);

/* Reading. */
enum tn_shard_check {
	TN_SHARD_CHECK_HEADER = 0, /* header, sizes, index checksum and order */
	TN_SHARD_CHECK_ALL = 1,    /* also payload checksum and every id < vocab */
};
struct tn_shard {
	char *path;
	struct tn_shard_header h;
	const uint8_t *map;
	size_t map_len;
	const uint8_t *tokens;  /* payload */
	const uint8_t *index;   /* n_docs + 1 little-endian u64 */
};
int tn_shard_open(struct tn_shard *s, const char *path, enum tn_shard_check check);
/* Tokens [start, start + n) as uint32. */
void tn_shard_tokens(const struct tn_shard *s, uint64_t start, size_t n, uint32_t *out);
static inline uint64_t tn_shard_doc_offset(const struct tn_shard *s, uint64_t i)
{
	const uint8_t *p = s->index + 8 * i;
	uint64_t v = 0;
	for (int b = 7; b >= 0; b--)
		v = v << 8 | p[b];
	return v;
}
void tn_shard_close(struct tn_shard *s);

/* Is this file a shard (by its magic)? */
int tn_is_shard_file(const char *path);

#endif
