/* fuzz_readers.c - libFuzzer targets for every reader of untrusted token
 * data: the token stream, the shard file, the manifest, llm.c .bin files and
 * id text. The first input byte picks the reader. Built with clang
 * -fsanitize=fuzzer by `make fuzz`; with replay.c instead of libFuzzer it
 * re-runs the kept corpus as a regression test in `make test`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ids.h"
#include "io.h"
#include "llmc.h"
#include "manifest.h"
#include "shard.h"
#include "stream.h"
#include "util.h"

static char dir[] = "/tmp/tn-fuzz-XXXXXX";

static void put_file(const char *path, const uint8_t *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (n && fwrite(data, 1, n, f) != n)
		abort();
	fclose(f);
}

static void read_stream(const char *path)
{
	struct tn_in in;
	if (tn_in_open(&in, path))
		return;
	struct tn_stream_reader *r;
	if (!tn_stream_reader_new(&r, &in)) {
		uint32_t buf[256];
		const uint8_t *p;
		size_t n;
		int end, eos = 0, rc = 0, raw = 0;
		while (!rc && !eos) {
			rc = raw ? tn_stream_read_raw(r, &p, 256, &n, &end, &eos)
				 : tn_stream_read(r, buf, 256, &n, &end, &eos);
			raw = !raw;
		}
		tn_stream_reader_free(r);
	}
	tn_in_close(&in);
}

static void read_shard(const char *path)
{
	struct tn_shard s;
	if (!tn_shard_open(&s, path, TN_SHARD_CHECK_ALL)) {
		uint32_t t;
		for (uint64_t d = 0; d < s.h.n_docs; d++)
			if (tn_shard_doc_offset(&s, d) < s.h.n_tokens)
				tn_shard_tokens(&s, tn_shard_doc_offset(&s, d), 1, &t);
		tn_shard_close(&s);
	}
}

static void read_manifest(void)
{
	struct tn_manifest m;
	if (!tn_manifest_read(dir, &m)) {
		struct tn_shard *shards;
		size_t n;
		if (!tn_manifest_open_shards(&m, dir, NULL, TN_SHARD_CHECK_ALL, &shards, &n))
			tn_shards_close(shards, n);
		tn_manifest_free(&m);
	}
}

static void read_llmc(const char *path)
{
	static struct tn_llmc_reader r;
	if (tn_llmc_open(&r, path, 60000, 50256))
		return;
	uint32_t buf[64];
	size_t n;
	int end, eos = 0;
	while (!eos && !tn_llmc_read(&r, buf, 64, &n, &end, &eos))
		;
	tn_llmc_close(&r);
}

static void read_ids(const char *path)
{
	struct tn_in in;
	if (tn_in_open(&in, path))
		return;
	struct tn_ids_reader r;
	tn_ids_reader_init(&r, &in, 1000);
	uint32_t buf[7];
	size_t n;
	int end, eos = 0;
	while (!eos && !tn_ids_read(&r, buf, 7, &n, &end, &eos))
		;
	tn_in_close(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (dir[13] == 'X' && !mkdtemp(dir))
		abort();
	char path[64];
	const char *name = data[0] % 5 == 2 ? TN_MANIFEST_NAME : "input";
	snprintf(path, sizeof path, "%s/%s", dir, name);
	put_file(path, data + 1, size - 1);
	switch (data[0] % 5) {
	case 0: read_stream(path); break;
	case 1: read_shard(path); break;
	case 2: read_manifest(); break;
	case 3: read_llmc(path); break;
	default: read_ids(path); break;
	}
	unlink(path);
	return 0;
}
