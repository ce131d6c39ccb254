/* pack.h - turn a document source into a shard directory (tn-shard pack).
 *
 * Without shuffle, dedup or a validation split, documents stream straight
 * into shards in input order. Otherwise tokens are spooled to one scratch
 * file and a 40-byte record per document (sequence number, xxh3-128 of
 * its tokens, offset, length) is sorted externally: by content to drop
 * exact duplicates (the first copy stays), then by a seeded hash of the
 * sequence number to shuffle, so memory stays within opts.memory however
 * large the corpus. The validation split takes whole documents from the
 * front of the final order until it holds its share of tokens. */
#ifndef TN_PACK_H
#define TN_PACK_H

#include <stdint.h>

#include "cli.h"
#include "source.h"

struct tn_pack_opts {
	const char *out_dir;
	uint64_t shard_tokens;   /* a shard ends at the first document end at or past this */
	uint64_t val_tokens;     /* validation tokens wanted (0: see val_fraction) */
	double val_fraction;     /* share of all tokens for validation (0: none) */
	int shuffle;
	uint64_t seed;
	int dedup;
	uint32_t width;          /* token width of the shards; 0 = the input's */
	uint64_t memory;         /* bound for sorting and buffers, bytes */
	const char *input_note;  /* how the input was given, for the manifest */
};

struct tn_pack_stats {
	uint64_t docs_in, tokens_in, duplicates;
	uint64_t docs[2], tokens[2], shards[2]; /* [0] train, [1] val */
};

int tn_pack(struct tn_source *src, const struct tn_pack_opts *o,
	    struct tn_pack_stats *st, struct tn_progress *progress);

#endif
