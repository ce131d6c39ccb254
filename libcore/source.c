/* source.c - one document sequence over several inputs. Inputs are opened
 * one at a time, when the previous one is exhausted. */
#include "source.h"
#include "ids.h"
#include "llmc.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct tn_source {
	struct tn_source_opts opts;
	char *const *paths;
	size_t n_paths, next;  /* next input to open */
	int open;              /* an input is open */
	struct tn_stream_info info;
	struct tn_in in;
	struct tn_stream_reader *stream;
	struct tn_ids_reader ids;
	struct tn_llmc_reader llmc;
};

static void close_input(struct tn_source *s)
{
	if (!s->open)
		return;
	if (s->opts.kind == TN_SOURCE_LLMC) {
		tn_llmc_close(&s->llmc);
	} else {
		tn_stream_reader_free(s->stream);
		s->stream = NULL;
		tn_in_close(&s->in);
	}
	s->open = 0;
}

static int open_next(struct tn_source *s)
{
	const char *path = s->paths[s->next++];
	int rc;
	switch (s->opts.kind) {
	case TN_SOURCE_LLMC:
		rc = tn_llmc_open(&s->llmc, path, s->info.vocab_size, s->opts.eot);
		break;
	case TN_SOURCE_IDS:
		rc = tn_in_open(&s->in, path);
		if (!rc)
			tn_ids_reader_init(&s->ids, &s->in, s->info.vocab_size);
		break;
	default:
		rc = tn_in_open(&s->in, path);
		if (!rc) {
			rc = tn_stream_reader_new(&s->stream, &s->in);
			if (rc)
				tn_in_close(&s->in);
		}
		if (!rc && s->next == 1)
			s->info = *tn_stream_reader_info(s->stream);
		else if (!rc)
			rc = tn_stream_info_check(&s->info, tn_stream_reader_info(s->stream), path);
		if (rc && s->stream) {
			tn_stream_reader_free(s->stream);
			s->stream = NULL;
			tn_in_close(&s->in);
		}
		break;
	}
	s->open = rc == TN_OK;
	return rc;
}

int tn_source_open(struct tn_source **sp, char *const *paths, size_t n,
		   const struct tn_source_opts *o)
{
	static char *const stdin_only[] = {"-"};
	struct tn_source *s = tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	s->opts = *o;
	s->paths = n ? paths : stdin_only;
	s->n_paths = n ? n : 1;
	if (o->kind != TN_SOURCE_STREAM) {
		s->info.vocab_size = o->vocab_size;
		if (o->kind == TN_SOURCE_LLMC && !o->vocab_size)
			s->info.vocab_size = 50257;
		if (!s->info.vocab_size) {
			free(s);
			return tn_fail(TN_EUSAGE, "--vocab-size is required for this input");
		}
		s->info.width = tn_width_for_vocab(s->info.vocab_size);
	}
	int rc = open_next(s);
	if (rc) {
		free(s);
		return rc;
	}
	*sp = s;
	return TN_OK;
}

const struct tn_stream_info *tn_source_info(const struct tn_source *s) { return &s->info; }
enum tn_source_kind tn_source_kind(const struct tn_source *s) { return s->opts.kind; }

int tn_source_read(struct tn_source *s, uint32_t *buf, size_t cap, size_t *n,
		   int *doc_end, int *eos)
{
	for (;;) {
		int rc;
		if (s->opts.kind == TN_SOURCE_LLMC)
			rc = tn_llmc_read(&s->llmc, buf, cap, n, doc_end, eos);
		else if (s->opts.kind == TN_SOURCE_IDS)
			rc = tn_ids_read(&s->ids, buf, cap, n, doc_end, eos);
		else
			rc = tn_stream_read(s->stream, buf, cap, n, doc_end, eos);
		if (rc || !*eos)
			return rc;
		close_input(s);
		if (s->next == s->n_paths)
			return TN_OK;
		if ((rc = open_next(s)))
			return rc;
	}
}

int tn_source_read_raw(struct tn_source *s, const uint8_t **p, size_t cap, size_t *n,
		       int *doc_end, int *eos)
{
	if (s->opts.kind != TN_SOURCE_STREAM)
		return tn_fail(TN_EUSAGE, "raw reading needs token stream input");
	for (;;) {
		int rc = tn_stream_read_raw(s->stream, p, cap, n, doc_end, eos);
		if (rc || !*eos)
			return rc;
		close_input(s);
		if (s->next == s->n_paths)
			return TN_OK;
		if ((rc = open_next(s)))
			return rc;
	}
}

void tn_source_free(struct tn_source *s)
{
	if (!s)
		return;
	close_input(s);
	free(s);
}
