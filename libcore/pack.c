/* pack.c - the pack job: source -> (spool, sort) -> shards + manifest.
 * The output appears atomically: everything is built in DIR/.partial-XXXXXX,
 * finished shards are renamed into DIR, and the manifest, written last,
 * marks the directory as complete. Any failure removes what was made. */
#include "pack.h"
#include "extsort.h"
#include "io.h"
#include "manifest.h"
#include "shard.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CHUNK_MAX (1u << 20)

struct docrec {          /* one spooled document */
	uint64_t seq, hash_lo, hash_hi, offset, n;
};

/* The shard writers of the two splits and the manifest they fill. */
struct emitter {
	const struct tn_pack_opts *o;
	char *work;
	struct tn_stream_info info;
	struct tn_shard_writer *w[2];
	struct tn_manifest man;
	struct tn_pack_stats *st;
	struct tn_progress *progress;
};

static const char *const split_name[2] = {"train", "val"};

static int shard_open(struct emitter *e, int split)
{
	char name[32];
	snprintf(name, sizeof name, "%s-%05llu.tns", split_name[split],
		 (unsigned long long)e->st->shards[split]);
	char *path = tn_path_join(e->work, name);
	if (!path)
		return TN_ENOMEM;
	int rc = tn_shard_writer_new(&e->w[split], path, &e->info);
	free(path);
	return rc;
}

static int shard_close(struct emitter *e, int split)
{
	char name[32];
	snprintf(name, sizeof name, "%s-%05llu.tns", split_name[split],
		 (unsigned long long)e->st->shards[split]);
	struct tn_shard_header h;
	int rc = tn_shard_writer_finish(e->w[split], &h);
	tn_shard_writer_free(e->w[split]);
	e->w[split] = NULL;
	if (!rc)
		rc = tn_manifest_add(&e->man, name, split_name[split], &h);
	e->st->shards[split]++;
	return rc;
}

static int emit(struct emitter *e, int split, const uint32_t *tok, size_t n)
{
	if (!e->w[split]) {
		int rc = shard_open(e, split);
		if (rc)
			return rc;
	}
	e->st->tokens[split] += n;
	return tn_shard_append(e->w[split], tok, n);
}

/* Training-split tokens already in the shard width. */
static int emit_raw(struct emitter *e, const uint8_t *tok, size_t n)
{
	if (!e->w[0]) {
		int rc = shard_open(e, 0);
		if (rc)
			return rc;
	}
	e->st->tokens[0] += n;
	return tn_shard_append_raw(e->w[0], tok, n);
}

static int emit_doc_end(struct emitter *e, int split)
{
	int rc = e->w[split] ? TN_OK : shard_open(e, split);
	if (!rc)
		rc = tn_shard_end_doc(e->w[split]);
	e->st->docs[split]++;
	if (!rc && tn_shard_writer_tokens(e->w[split]) >= e->o->shard_tokens)
		rc = shard_close(e, split);
	tn_progress_update(e->progress, "pack: %llu documents, %llu tokens written",
			   (unsigned long long)(e->st->docs[0] + e->st->docs[1]),
			   (unsigned long long)(e->st->tokens[0] + e->st->tokens[1]));
	return rc;
}

/* ---- the output directory ---- */

static int dir_is_empty(const char *path, int *empty)
{
	DIR *d = opendir(path);
	if (!d)
		return tn_fail_errno("%s: cannot open directory", path);
	struct dirent *ent;
	*empty = 1;
	while ((ent = readdir(d)))
		if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, ".."))
			*empty = 0;
	closedir(d);
	return TN_OK;
}

static int prepare_dir(const char *dir, int *created, char **work)
{
	*created = 0;
	if (mkdir(dir, 0755) == 0) {
		*created = 1;
	} else if (errno == EEXIST) {
		struct stat st;
		int empty = 0, rc;
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			return tn_fail(TN_EUSAGE, "%s: exists and is not a directory", dir);
		if ((rc = dir_is_empty(dir, &empty)))
			return rc;
		if (!empty)
			return tn_fail(TN_EUSAGE, "%s: exists and is not empty", dir);
	} else {
		return tn_fail_errno("%s: cannot create directory", dir);
	}
	*work = tn_path_join(dir, ".partial-XXXXXX");
	if (*work && !mkdtemp(*work)) {
		int rc = tn_fail_errno("%s: cannot create a work directory", dir);
		free(*work);
		*work = NULL;
		return rc;
	}
	return *work ? TN_OK : TN_ENOMEM;
}

/* Remove the work directory and its files (a failed or finished run). */
static void remove_work(const char *work)
{
	DIR *d = opendir(work);
	if (!d)
		return;
	struct dirent *ent;
	while ((ent = readdir(d))) {
		if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
			continue;
		char *p = tn_path_join(work, ent->d_name);
		if (p)
			unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(work);
}

/* Failures inside the work directory are reported under the name the file
 * would have had in the output directory. */
static void name_final_path(const char *work, const char *dir)
{
	char msg[1024];
	const char *at = strstr(tn_errmsg(), work);
	if (!at || at[strlen(work)] != '/')
		return;
	snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - tn_errmsg()), tn_errmsg(), dir,
		 at + strlen(work));
	tn_fail(TN_OK, "%s", msg);
}

static int publish(struct emitter *e, const char *dir)
{
	for (size_t i = 0; i < e->man.n_shards; i++) {
		char *from = tn_path_join(e->work, e->man.shards[i].file);
		char *to = tn_path_join(dir, e->man.shards[i].file);
		int rc = from && to ? TN_OK : TN_ENOMEM;
		if (!rc && rename(from, to) != 0)
			rc = tn_fail_errno("%s: cannot move into place", to);
		free(from);
		free(to);
		if (rc)
			return rc;
	}
	return tn_manifest_write(dir, &e->man);
}

static void unpublish(struct emitter *e, const char *dir)
{
	for (size_t i = 0; i < e->man.n_shards; i++) {
		char *to = tn_path_join(dir, e->man.shards[i].file);
		if (to)
			unlink(to);
		free(to);
	}
}

/* ---- streaming: input order, no spool ---- */

static int pack_stream(struct emitter *e, struct tn_source *src, uint32_t *buf, size_t cap)
{
	/* Same width in and out: tokens go from the read buffer to the shard as they are. */
	int raw = tn_source_kind(src) == TN_SOURCE_STREAM &&
		  tn_source_info(src)->width == e->info.width;
	for (;;) {
		size_t n;
		const uint8_t *p = NULL;
		int end, eos, rc = raw ? tn_source_read_raw(src, &p, cap, &n, &end, &eos)
				       : tn_source_read(src, buf, cap, &n, &end, &eos);
		if (!rc && n)
			rc = raw ? emit_raw(e, p, n) : emit(e, 0, buf, n);
		if (!rc && end) {
			e->st->docs_in++;
			rc = emit_doc_end(e, 0);
		}
		e->st->tokens_in += n;
		if (rc || eos)
			return rc;
	}
}

/* ---- spooled: shuffle, dedup, split ---- */

struct spool {
	int tok_fd, rec_fd;
	uint64_t n_recs;
};

static int spool_input(struct emitter *e, struct tn_source *src, uint32_t *buf, size_t cap,
		       struct spool *sp)
{
	struct tn_out tok, rec;
	int rc = tn_out_open_fd(&tok, sp->tok_fd, "token spool");
	if (!rc)
		rc = tn_out_open_fd(&rec, sp->rec_fd, "document spool");
	XXH3_state_t *h = XXH3_createState();
	if (!h && !rc)
		rc = tn_fail(TN_ENOMEM, "out of memory");
	struct docrec d = {0};
	if (h)
		XXH3_128bits_reset(h);
	while (!rc) {
		size_t n;
		int end, eos;
		rc = tn_source_read(src, buf, cap, &n, &end, &eos);
		if (rc || eos)
			break;
		XXH3_128bits_update(h, buf, n * sizeof *buf);
		d.n += n;
		rc = tn_out_write(&tok, buf, n * sizeof *buf);
		if (rc || !end)
			continue;
		XXH128_hash_t dh = XXH3_128bits_digest(h);
		d.hash_lo = dh.low64;
		d.hash_hi = dh.high64;
		rc = tn_out_write(&rec, &d, sizeof d);
		e->st->docs_in++;
		e->st->tokens_in += d.n;
		d.seq++;
		d.offset += d.n;
		d.n = 0;
		XXH3_128bits_reset(h);
		tn_progress_update(e->progress, "pack: spooled %llu documents, %llu tokens",
				   (unsigned long long)e->st->docs_in,
				   (unsigned long long)e->st->tokens_in);
	}
	sp->n_recs = d.seq;
	if (!rc)
		rc = tn_out_flush(&tok);
	if (!rc)
		rc = tn_out_flush(&rec);
	if (h)
		XXH3_freeState(h);
	tn_out_abort(&tok);
	tn_out_abort(&rec);
	return rc;
}

static int cmp_u64(uint64_t a, uint64_t b) { return (a > b) - (a < b); }

static int by_content(const void *pa, const void *pb, void *ctx)
{
	const struct docrec *a = pa, *b = pb;
	(void)ctx;
	int c = cmp_u64(a->hash_hi, b->hash_hi);
	if (!c)
		c = cmp_u64(a->hash_lo, b->hash_lo);
	if (!c)
		c = cmp_u64(a->n, b->n);
	return c ? c : cmp_u64(a->seq, b->seq);
}

static uint64_t shuffle_key(uint64_t seq, uint64_t seed)
{
	return XXH3_64bits_withSeed(&seq, sizeof seq, seed);
}

static int by_order(const void *pa, const void *pb, void *ctx)
{
	const struct docrec *a = pa, *b = pb;
	const uint64_t *seed = ctx;
	int c = seed ? cmp_u64(shuffle_key(a->seq, *seed), shuffle_key(b->seq, *seed)) : 0;
	return c ? c : cmp_u64(a->seq, b->seq);
}

/* Sequential buffered reading of docrecs from a descriptor. */
static int read_recs(int fd, uint64_t first, struct docrec *buf, size_t cap,
		     uint64_t total, size_t *got)
{
	*got = (size_t)TN_MIN((uint64_t)cap, total - first);
	return *got ? tn_pread_all(fd, buf, *got * sizeof *buf, first * sizeof *buf, "document spool")
		    : TN_OK;
}

/* Keep the first copy of each distinct document; rewrites sp->rec_fd. */
static int drop_duplicates(struct emitter *e, struct spool *sp, const char *tmp,
			   struct docrec *recs, size_t cap)
{
	struct tn_extsort so = {sizeof(struct docrec), by_content, NULL, e->o->memory / 2, tmp};
	int sorted_fd = -1, kept_fd = -1;
	int rc = tn_scratch_fd(tmp, &sorted_fd);
	if (!rc)
		rc = tn_extsort(&so, sp->rec_fd, sp->n_recs, sorted_fd, "document spool");
	if (!rc)
		rc = tn_scratch_fd(tmp, &kept_fd);
	struct tn_out kept;
	if (!rc)
		rc = tn_out_open_fd(&kept, kept_fd, "document spool");
	else
		memset(&kept, 0, sizeof kept);
	struct docrec prev = {0};
	uint64_t n_kept = 0;
	for (uint64_t at = 0; !rc && at < sp->n_recs;) {
		size_t got;
		rc = read_recs(sorted_fd, at, recs, cap, sp->n_recs, &got);
		for (size_t i = 0; !rc && i < got; i++, at++) {
			const struct docrec *d = &recs[i];
			if (at > 0 && d->hash_hi == prev.hash_hi && d->hash_lo == prev.hash_lo &&
			    d->n == prev.n) {
				e->st->duplicates++;
				continue;
			}
			prev = *d;
			n_kept++;
			rc = tn_out_write(&kept, d, sizeof *d);
		}
	}
	if (!rc)
		rc = tn_out_flush(&kept);
	tn_out_abort(&kept);
	if (sorted_fd >= 0)
		close(sorted_fd);
	if (!rc) {
		close(sp->rec_fd);
		sp->rec_fd = kept_fd;
		sp->n_recs = n_kept;
	} else if (kept_fd >= 0) {
		close(kept_fd);
	}
	return rc;
}

static int order_records(struct emitter *e, struct spool *sp, const char *tmp)
{
	if (!e->o->shuffle && !e->o->dedup)
		return TN_OK; /* already in input order */
	uint64_t seed = e->o->seed;
	struct tn_extsort so = {sizeof(struct docrec), by_order, e->o->shuffle ? &seed : NULL,
				e->o->memory / 2, tmp};
	int fd = -1, rc = tn_scratch_fd(tmp, &fd);
	if (!rc)
		rc = tn_extsort(&so, sp->rec_fd, sp->n_recs, fd, "document spool");
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(sp->rec_fd);
	sp->rec_fd = fd;
	return TN_OK;
}

static uint64_t val_target(const struct tn_pack_opts *o, uint64_t total)
{
	if (o->val_tokens)
		return o->val_tokens;
	return (uint64_t)ceil(o->val_fraction * (double)total);
}

static int write_ordered(struct emitter *e, struct spool *sp, struct docrec *recs,
			 size_t cap, uint32_t *buf, size_t buf_cap)
{
	uint64_t total = 0;
	for (uint64_t at = 0; at < sp->n_recs;) {
		size_t got;
		int rc = read_recs(sp->rec_fd, at, recs, cap, sp->n_recs, &got);
		if (rc)
			return rc;
		for (size_t i = 0; i < got; i++)
			total += recs[i].n;
		at += got;
	}
	uint64_t want_val = val_target(e->o, total), val = 0;
	for (uint64_t at = 0; at < sp->n_recs;) {
		size_t got;
		int rc = read_recs(sp->rec_fd, at, recs, cap, sp->n_recs, &got);
		for (size_t i = 0; !rc && i < got; i++, at++) {
			int split = val < want_val;
			for (uint64_t done = 0; !rc && done < recs[i].n;) {
				size_t take = (size_t)TN_MIN((uint64_t)buf_cap, recs[i].n - done);
				rc = tn_pread_all(sp->tok_fd, buf, take * sizeof *buf,
						  (recs[i].offset + done) * sizeof *buf, "token spool");
				if (!rc)
					rc = emit(e, split, buf, take);
				done += take;
			}
			if (!rc)
				rc = emit_doc_end(e, split);
			val += split ? recs[i].n : 0;
		}
		if (rc)
			return rc;
	}
	return TN_OK;
}

static int pack_spooled(struct emitter *e, struct tn_source *src, uint32_t *buf, size_t cap)
{
	struct spool sp = {-1, -1, 0};
	size_t rec_cap = TN_MAX((size_t)64, (size_t)(e->o->memory / 8 / sizeof(struct docrec)));
	rec_cap = TN_MIN(rec_cap, (size_t)65536);
	struct docrec *recs = tn_malloc(rec_cap * sizeof *recs);
	int rc = recs ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = tn_scratch_fd(e->work, &sp.tok_fd);
	if (!rc)
		rc = tn_scratch_fd(e->work, &sp.rec_fd);
	if (!rc)
		rc = spool_input(e, src, buf, cap, &sp);
	if (!rc && e->o->dedup)
		rc = drop_duplicates(e, &sp, e->work, recs, rec_cap);
	if (!rc)
		rc = order_records(e, &sp, e->work);
	if (!rc)
		rc = write_ordered(e, &sp, recs, rec_cap, buf, cap);
	if (sp.tok_fd >= 0)
		close(sp.tok_fd);
	if (sp.rec_fd >= 0)
		close(sp.rec_fd);
	free(recs);
	return rc;
}

static char *pack_json(const struct tn_pack_opts *o, const struct tn_pack_stats *st)
{
	json_t *j = json_pack("{s:s,s:s,s:I,s:b,s:I,s:b,s:I,s:I}",
		"tool", "tn-shard " TN_VERSION, "input", o->input_note ? o->input_note : "",
		"shard_tokens", (json_int_t)o->shard_tokens, "shuffle", o->shuffle,
		"seed", (json_int_t)o->seed, "dedup", o->dedup,
		"duplicates_removed", (json_int_t)st->duplicates,
		"documents_in", (json_int_t)st->docs_in);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	return s;
}

static int check_opts(const struct tn_pack_opts *o, struct tn_stream_info *info)
{
	if (o->width) {
		if (o->width != 2 && o->width != 4)
			return tn_fail(TN_EUSAGE, "--width must be 2 or 4");
		if (o->width == 2 && info->vocab_size > 65536)
			return tn_fail(TN_EUSAGE, "a vocabulary of %u does not fit 2-byte tokens",
				       info->vocab_size);
		info->width = o->width;
	}
	if (!o->shard_tokens)
		return tn_fail(TN_EUSAGE, "--shard-tokens must be positive");
	if (o->val_fraction < 0 || o->val_fraction >= 1)
		return tn_fail(TN_EUSAGE, "--val-fraction must be in [0, 1)");
	return TN_OK;
}

int tn_pack(struct tn_source *src, const struct tn_pack_opts *o,
	    struct tn_pack_stats *st, struct tn_progress *progress)
{
	memset(st, 0, sizeof *st);
	struct emitter e = {.o = o, .st = st, .progress = progress};
	e.info = *tn_source_info(src);
	int rc = check_opts(o, &e.info);
	if (rc)
		return rc;
	e.man.info = e.info;
	size_t cap = (size_t)TN_MAX(1024, TN_MIN((uint64_t)CHUNK_MAX, o->memory / 16 / sizeof(uint32_t)));
	uint32_t *buf = tn_malloc(cap * sizeof *buf);
	if (!buf)
		return TN_ENOMEM;
	int created = 0;
	rc = prepare_dir(o->out_dir, &created, &e.work);
	int spooled = o->shuffle || o->dedup || o->val_tokens || o->val_fraction > 0;
	if (!rc)
		rc = spooled ? pack_spooled(&e, src, buf, cap) : pack_stream(&e, src, buf, cap);
	for (int s = 0; s < 2; s++)
		if (!rc && e.w[s])
			rc = shard_close(&e, s);
	if (!rc && !(e.man.pack_json = pack_json(o, st)))
		rc = tn_fail(TN_ENOMEM, "out of memory");
	if (!rc && (rc = publish(&e, o->out_dir)))
		unpublish(&e, o->out_dir);
	for (int s = 0; s < 2; s++)
		tn_shard_writer_free(e.w[s]);
	if (e.work)
		remove_work(e.work);
	if (rc && created)
		rmdir(o->out_dir);
	if (rc && e.work)
		name_final_path(e.work, o->out_dir);
	tn_progress_done(progress);
	free(e.work);
	free(buf);
	tn_manifest_free(&e.man);
	return rc;
}
