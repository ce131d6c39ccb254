/* manifest.h - manifest.json of a shard directory (man 5 tn-shard): the
 * list of shards in order with their counts and header checksums, written
 * last, so a directory without one is unfinished. The file carries the
 * xxh3-64 of its own text (with the checksum digits zeroed) as its last
 * field, so any change to it is detected. */
#ifndef TN_MANIFEST_H
#define TN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "shard.h"
#include "stream.h"

#define TN_MANIFEST_NAME "manifest.json"
#define TN_MANIFEST_VERSION 1

struct tn_manifest_shard {
	char *file;      /* name inside the directory */
	char *split;     /* "train" or "val" */
	uint64_t tokens, docs, bytes, header_xxh3;
};

struct tn_manifest {
	struct tn_stream_info info;
	struct tn_manifest_shard *shards;
	size_t n_shards;
	char *pack_json; /* how the directory was made (a JSON object, as text) */
};

int tn_manifest_add(struct tn_manifest *m, const char *file, const char *split,
		    const struct tn_shard_header *h);
int tn_manifest_write(const char *dir, const struct tn_manifest *m);
int tn_manifest_read(const char *dir, struct tn_manifest *m);
void tn_manifest_free(struct tn_manifest *m);

/* Open the shards of one split ("train", "val", or NULL for all) in order,
 * checking each against its manifest entry. */
int tn_manifest_open_shards(const struct tn_manifest *m, const char *dir,
			    const char *split, enum tn_shard_check check,
			    struct tn_shard **shards, size_t *n);
void tn_shards_close(struct tn_shard *shards, size_t n);

/* Totals of a split (NULL = all). */
void tn_manifest_totals(const struct tn_manifest *m, const char *split,
			uint64_t *tokens, uint64_t *docs);

#endif
