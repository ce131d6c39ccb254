/* inspect.c - describing and verifying token data files. */
#include "inspect.h"
#include "io.h"
#include "llmc.h"
#include "manifest.h"
#include "shard.h"
#include "stream.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *info_json(const struct tn_stream_info *info)
{
	char fp[33];
	tn_fingerprint_hex(info->fingerprint, fp);
	return json_pack("{s:i,s:I,s:s}", "token_width", (int)info->width,
			 "vocab_size", (json_int_t)info->vocab_size, "tokenizer", fp);
}

static json_t *hex64(uint64_t v)
{
	char s[17];
	snprintf(s, sizeof s, "%016llx", (unsigned long long)v);
	return json_string(s);
}

static int inspect_shard(const char *path, int full, json_t *d)
{
	struct tn_shard s;
	int rc = tn_shard_open(&s, path, full ? TN_SHARD_CHECK_ALL : TN_SHARD_CHECK_HEADER);
	if (rc)
		return rc;
	json_object_set_new(d, "kind", json_string("shard"));
	json_object_set_new(d, "version", json_integer(TN_SHARD_VERSION));
	json_t *info = info_json(&s.h.info);
	json_object_update(d, info);
	json_decref(info);
	json_object_set_new(d, "documents", json_integer((json_int_t)s.h.n_docs));
	json_object_set_new(d, "tokens", json_integer((json_int_t)s.h.n_tokens));
	json_object_set_new(d, "bytes", json_integer((json_int_t)s.h.file_size));
	json_object_set_new(d, "payload_xxh3", hex64(s.h.payload_xxh3));
	json_object_set_new(d, "index_xxh3", hex64(s.h.index_xxh3));
	json_object_set_new(d, "header_xxh3", hex64(s.h.header_xxh3));
	tn_shard_close(&s);
	return TN_OK;
}

static int inspect_dir(const char *path, int full, json_t *d)
{
	struct tn_manifest m;
	int rc = tn_manifest_read(path, &m);
	if (rc)
		return rc;
	struct tn_shard *shards = NULL;
	size_t n = 0;
	rc = tn_manifest_open_shards(&m, path, NULL, full ? TN_SHARD_CHECK_ALL : TN_SHARD_CHECK_HEADER,
				     &shards, &n);
	if (!rc) {
		json_object_set_new(d, "kind", json_string("directory"));
		json_t *info = info_json(&m.info);
		json_object_update(d, info);
		json_decref(info);
		json_t *list = json_array();
		for (const char *const *sp = (const char *const[]){"train", "val", NULL}; *sp; sp++) {
			uint64_t t, dc;
			tn_manifest_totals(&m, *sp, &t, &dc);
			json_object_set_new(d, *sp, json_pack("{s:I,s:I}", "documents", (json_int_t)dc,
							      "tokens", (json_int_t)t));
		}
		for (size_t i = 0; i < m.n_shards; i++)
			json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:I,s:I}",
				"file", m.shards[i].file, "split", m.shards[i].split,
				"documents", (json_int_t)m.shards[i].docs,
				"tokens", (json_int_t)m.shards[i].tokens,
				"bytes", (json_int_t)m.shards[i].bytes));
		json_object_set_new(d, "shards", list);
		json_t *pack = json_loads(m.pack_json ? m.pack_json : "{}", 0, NULL);
		if (pack)
			json_object_set_new(d, "pack", pack);
	}
	tn_shards_close(shards, n);
	tn_manifest_free(&m);
	return rc;
}

static int inspect_stream(const char *path, json_t *d)
{
	struct tn_in in;
	int rc = tn_in_open(&in, path);
	if (rc)
		return rc;
	struct tn_stream_reader *r = NULL;
	rc = tn_stream_reader_new(&r, &in);
	uint32_t *buf = tn_malloc(65536 * sizeof *buf);
	uint64_t tokens = 0;
	if (!rc && !buf)
		rc = TN_ENOMEM;
	for (int eos = 0; !rc && !eos;) {
		size_t n;
		int end;
		rc = tn_stream_read(r, buf, 65536, &n, &end, &eos);
		tokens += n;
	}
	if (!rc) {
		json_object_set_new(d, "kind", json_string("stream"));
		json_object_set_new(d, "version", json_integer(TN_STREAM_VERSION));
		json_t *info = info_json(tn_stream_reader_info(r));
		json_object_update(d, info);
		json_decref(info);
		json_object_set_new(d, "documents", json_integer((json_int_t)tn_stream_reader_docs(r)));
		json_object_set_new(d, "tokens", json_integer((json_int_t)tokens));
	}
	free(buf);
	tn_stream_reader_free(r);
	tn_in_close(&in);
	return rc;
}

static int inspect_llmc(const char *path, json_t *d)
{
	struct tn_llmc_reader *r = tn_malloc(sizeof *r);
	if (!r)
		return TN_ENOMEM;
	int rc = tn_llmc_open(r, path, UINT32_MAX, -1);
	uint32_t buf[4096];
	for (int eos = 0; !rc && !eos;) {
		size_t n;
		int end;
		rc = tn_llmc_read(r, buf, 4096, &n, &end, &eos);
	}
	if (!rc) {
		json_object_set_new(d, "kind", json_string("llm.c"));
		json_object_set_new(d, "version", json_integer(r->version));
		json_object_set_new(d, "token_width", json_integer(r->version == 1 ? 2 : 4));
		json_object_set_new(d, "tokens", json_integer((json_int_t)r->n_tokens));
		tn_llmc_close(r);
	}
	free(r);
	return rc;
}

static int read_magic(const char *path, uint8_t m[8])
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return tn_fail_errno("%s: cannot open", path);
	ssize_t n = read(fd, m, 8);
	close(fd);
	if (n < 0)
		return tn_fail_errno("%s: cannot read", path);
	if (n < 8)
		return tn_fail(TN_EDATA, "%s: %s", path, n ? "truncated: too short to tell its kind" : "empty file");
	return TN_OK;
}

int tn_inspect(const char *path, int full, json_t **out)
{
	json_t *d = json_pack("{s:s}", "path", path);
	if (!d)
		return tn_fail(TN_ENOMEM, "out of memory");
	struct stat st;
	int rc;
	uint8_t m[8];
	if (stat(path, &st) != 0)
		rc = tn_fail_errno("%s: cannot open", path);
	else if (S_ISDIR(st.st_mode))
		rc = inspect_dir(path, full, d);
	else if ((rc = read_magic(path, m)))
		;
	else if (memcmp(m, TN_SHARD_MAGIC, 8) == 0)
		rc = inspect_shard(path, full, d);
	else if (memcmp(m, TN_STREAM_MAGIC, 8) == 0)
		rc = inspect_stream(path, d);
	else if (tn_le32(m) == TN_LLMC_MAGIC)
		rc = inspect_llmc(path, d);
	else
		rc = tn_fail(TN_EDATA, "%s: offset 0: not a shard, shard directory, token stream or llm.c file",
			     path);
	if (rc) {
		json_decref(d);
		return rc;
	}
	*out = d;
	return TN_OK;
}

static void print_value(const char *key, const json_t *v, FILE *f)
{
	if (json_is_string(v))
		fprintf(f, "%-13s %s\n", key, json_string_value(v));
	else if (json_is_integer(v))
		fprintf(f, "%-13s %lld\n", key, (long long)json_integer_value(v));
	else if (json_is_boolean(v))
		fprintf(f, "%-13s %s\n", key, json_is_true(v) ? "yes" : "no");
}

void tn_inspect_print(const json_t *desc, FILE *f)
{
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)desc, key, v) {
		char label[32];
		snprintf(label, sizeof label, "%s:", key);
		if (json_is_object(v) && strcmp(key, "pack") != 0) {
			fprintf(f, "%-13s %lld documents, %lld tokens\n", label,
				(long long)json_integer_value(json_object_get(v, "documents")),
				(long long)json_integer_value(json_object_get(v, "tokens")));
		} else if (json_is_array(v)) {
			size_t i;
			const json_t *s;
			json_array_foreach(v, i, s)
				fprintf(f, "  %-20s %-5s %12lld documents %14lld tokens\n",
					json_string_value(json_object_get(s, "file")),
					json_string_value(json_object_get(s, "split")),
					(long long)json_integer_value(json_object_get(s, "documents")),
					(long long)json_integer_value(json_object_get(s, "tokens")));
		} else {
			print_value(label, v, f);
		}
	}
}
