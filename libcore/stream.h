/* stream.h - the token stream (man 5 tn-tokens): what tn tools write to
 * pipes. A header (magic, version, token width, vocabulary size, tokenizer
 * fingerprint), then documents as length-prefixed chunks, an xxh3 checksum
 * record at least every TN_STREAM_CHECK_BYTES, and an explicit end record,
 * so that corruption and a truncated pipe are detected without seeking.
 * Several streams may follow one another (cat a.tok b.tok); they must agree
 * on width, vocabulary and fingerprint. Tokens are uint32_t in memory. */
#ifndef TN_STREAM_H
#define TN_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"

#define TN_STREAM_MAGIC "TNTOKENS"
#define TN_STREAM_VERSION 1
#define TN_STREAM_HEADER_BYTES 48
#define TN_STREAM_CHECK_BYTES (4u << 20)
#define TN_STREAM_MAX_CHUNK (1u << 20) /* tokens per chunk record */

enum tn_stream_record {
	TN_REC_PART = 1,  /* tokens; the document continues */
	TN_REC_DOC = 2,   /* tokens; the document ends here */
	TN_REC_CHECK = 3, /* xxh3-64 of the bytes since the last check */
	TN_REC_END = 4,   /* document and token totals, then a last check */
};

struct tn_stream_info {
	uint32_t width;          /* bytes per token on disk: 2 or 4 */
	uint32_t vocab_size;     /* every id is < vocab_size */
	uint8_t fingerprint[16]; /* xxh3-128 of the tokenizer; zero = none */
};

/* Smallest width that holds ids below vocab_size. */
uint32_t tn_width_for_vocab(uint32_t vocab_size);
/* The largest of n little-endian ids of the given width at p (0 if n is 0). */
uint32_t tn_tokens_max(const uint8_t *p, size_t n, uint32_t width);
/* Do two streams' infos agree (else a message naming both)? */
int tn_stream_info_check(const struct tn_stream_info *want,
			 const struct tn_stream_info *got, const char *name);
void tn_fingerprint_hex(const uint8_t fp[16], char out[33]);

struct tn_stream_writer;
int tn_stream_writer_new(struct tn_stream_writer **w, struct tn_out *out,
			 const struct tn_stream_info *info);
/* Append tokens to the current document (starting one if none is open). */
int tn_stream_append(struct tn_stream_writer *w, const uint32_t *tok, size_t n);
/* End the current document (an empty one if nothing was appended). */
int tn_stream_end_doc(struct tn_stream_writer *w);
/* A whole document: append + end. */
int tn_stream_write_doc(struct tn_stream_writer *w, const uint32_t *tok, size_t n);
/* Write the end record and flush; the tn_out is still the caller's. */
int tn_stream_finish(struct tn_stream_writer *w);
void tn_stream_writer_free(struct tn_stream_writer *w);

struct tn_stream_reader;
/* Read and check the header; `in` stays the caller's. */
int tn_stream_reader_new(struct tn_stream_reader **r, struct tn_in *in);
const struct tn_stream_info *tn_stream_reader_info(const struct tn_stream_reader *r);
/* Read up to cap tokens of the current document into buf. *n is the count,
 * *doc_end says the document ends with them, *eos says the input is
 * exhausted (no tokens then). Every id is checked against the vocabulary. */
int tn_stream_read(struct tn_stream_reader *r, uint32_t *buf, size_t cap,
		   size_t *n, int *doc_end, int *eos);
/* As tn_stream_read, but *p points at the tokens in their on-disk width
 * inside the reader's buffer, valid until the next read; saves a copy. */
int tn_stream_read_raw(struct tn_stream_reader *r, const uint8_t **p, size_t cap,
		       size_t *n, int *doc_end, int *eos);
/* Read a whole document into *buf (grown as needed, *cap its capacity). */
int tn_stream_read_doc(struct tn_stream_reader *r, uint32_t **buf, size_t *cap,
		       size_t *n, int *eos);
uint64_t tn_stream_reader_docs(const struct tn_stream_reader *r);
void tn_stream_reader_free(struct tn_stream_reader *r);

#endif
