/* source.h - documents from a list of inputs of one kind: token streams,
 * decimal-id text, or llm.c .bin files, read one after another as a single
 * sequence of documents, in chunks, so any document size fits in constant
 * memory. Every input must agree with the first on vocabulary and
 * tokenizer fingerprint. */
#ifndef TN_SOURCE_H
#define TN_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

enum tn_source_kind { TN_SOURCE_STREAM, TN_SOURCE_IDS, TN_SOURCE_LLMC };

struct tn_source_opts {
	enum tn_source_kind kind;
	uint32_t vocab_size; /* ids and llm.c inputs (llm.c: 0 = 50257) */
	int64_t eot;         /* llm.c: documents start at this id; -1 = none */
};

struct tn_source;
int tn_source_open(struct tn_source **s, char *const *paths, size_t n,
		   const struct tn_source_opts *o);
const struct tn_stream_info *tn_source_info(const struct tn_source *s);
enum tn_source_kind tn_source_kind(const struct tn_source *s);
/* Same contract as tn_stream_read(), over all inputs in turn. */
int tn_source_read(struct tn_source *s, uint32_t *buf, size_t cap, size_t *n,
		   int *doc_end, int *eos);
/* Token streams only: tokens in their on-disk width (tn_stream_read_raw). */
int tn_source_read_raw(struct tn_source *s, const uint8_t **p, size_t cap, size_t *n,
		       int *doc_end, int *eos);
void tn_source_free(struct tn_source *s);

#endif
