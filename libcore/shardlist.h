/* shardlist.h - the shards named on a command line (shard files and shard
 * directories, a directory meaning one split of its manifest), opened and
 * checked in full, and written back out as a token stream, decimal ids or
 * an llm.c .bin file. All must share vocabulary and tokenizer. */
#ifndef TN_SHARDLIST_H
#define TN_SHARDLIST_H

#include <stddef.h>

#include "io.h"
#include "shard.h"

struct tn_shard_list {
	struct tn_shard *shards;
	size_t n;
	struct tn_stream_info info;
};

int tn_shard_list_open(struct tn_shard_list *l, char *const *paths, size_t n,
		       const char *split);
void tn_shard_list_close(struct tn_shard_list *l);

int tn_shard_list_write_stream(const struct tn_shard_list *l, struct tn_out *out);
/* One line of space-separated ids per document. */
int tn_shard_list_write_ids(const struct tn_shard_list *l, struct tn_out *out);
/* llm.c format version 1 (uint16) or 2 (uint32); eot >= 0 is put before
 * every document that does not already start with it. */
int tn_shard_list_write_llmc(const struct tn_shard_list *l, struct tn_out *out,
			     int version, int64_t eot);

#endif
