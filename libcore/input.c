/* input.c - walking the inputs, reading each file or archive member whole
 * through libarchive, and cutting it into documents. Whether a file is an
 * archive is decided by its name (.tar*, .tgz, .zip, ...): libarchive's
 * format sniffing would take some plain text files for mtree archives.
 * Plain files and stdin are read directly. */
#include "input.h"
#include "io.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EOT_LINE "\n<|endoftext|>\n"

struct tn_input {
	struct tn_input_opts o;
	char **files;
	size_t n_files, next_file;
	struct archive *ar; /* the open file or archive */
	char *ar_name;
	int ar_is_archive;
	char *member;       /* name for messages: file or file:member */
	uint8_t *buf;       /* the current file or member */
	size_t len, cap, pos;
	int have_buf;
	uint64_t line;      /* JSONL: 1-based line of the next record */
	char *doc;          /* JSONL: the current field's text */
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_file(struct tn_input *in, const char *path, size_t *cap)
{
	if (in->n_files == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		char **f = tn_realloc(in->files, *cap * sizeof *f);
		if (!f)
			return TN_ENOMEM;
		in->files = f;
	}
	if (!(in->files[in->n_files] = tn_strdup(path)))
		return TN_ENOMEM;
	in->n_files++;
	return TN_OK;
}

static int walk(struct tn_input *in, const char *path, size_t *cap)
{
	struct stat st;
	if (strcmp(path, "-") == 0)
		return add_file(in, path, cap);
	if (stat(path, &st) != 0)
		return tn_fail_errno("%s", path);
	if (!S_ISDIR(st.st_mode))
		return add_file(in, path, cap);
	DIR *d = opendir(path);
	if (!d)
		return tn_fail_errno("%s", path);
	char **names = NULL;
	size_t n = 0, ncap = 0;
	int rc = TN_OK;
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue; /* ., .. and hidden files */
		if (n == ncap) {
			ncap = ncap ? 2 * ncap : 16;
			char **nn = tn_realloc(names, ncap * sizeof *nn);
			if (!nn) {
				rc = TN_ENOMEM;
				break;
			}
			names = nn;
		}
		size_t l = strlen(path) + strlen(e->d_name) + 2;
		if (!(names[n] = tn_malloc(l))) {
			rc = TN_ENOMEM;
			break;
		}
		snprintf(names[n++], l, "%s/%s", path, e->d_name);
	}
	closedir(d);
	if (!rc)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = walk(in, names[i], cap);
		free(names[i]);
	}
	free(names);
	return rc;
}

int tn_input_open(struct tn_input **out, char *const *paths, size_t n,
		  const struct tn_input_opts *o)
{
	struct tn_input *in = tn_calloc(1, sizeof *in);
	if (!in)
		return TN_ENOMEM;
	in->o = *o;
	size_t cap = 0;
	int rc = TN_OK;
	char *dash = "-";
	if (n == 0) {
		paths = &dash;
		n = 1;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = walk(in, paths[i], &cap);
	if (rc) {
		tn_input_free(in);
		return rc;
	}
	*out = in;
	return TN_OK;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_archive_name(const char *p)
{
	static const char *const ext[] = { ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz",
		".tar.zst", ".tzst", ".tar.bz2", ".tbz2", ".tbz", ".zip" };
	for (size_t i = 0; i < TN_ARRAY_LEN(ext); i++)
		if (ends_with(p, ext[i]))
			return 1;
	return 0;
}

static int is_compressed_name(const char *p)
{
	static const char *const ext[] = { ".gz", ".xz", ".zst", ".bz2", ".lzma" };
	for (size_t i = 0; i < TN_ARRAY_LEN(ext); i++)
		if (ends_with(p, ext[i]))
			return 1;
	return 0;
}

/* A plain file (or stdin) is read as it is, without libarchive. */
static int read_plain(struct tn_input *in, const char *path)
{
	uint8_t *d;
	size_t n;
	int rc = tn_read_file(path, &d, &n);
	if (rc)
		return rc;
	free(in->buf);
	free(in->member);
	in->buf = d;
	in->len = n;
	in->cap = n;
	in->pos = 0;
	in->have_buf = 1;
	in->line = 1;
	in->member = tn_strdup(path);
	return in->member ? TN_OK : TN_ENOMEM;
}

static void close_archive(struct tn_input *in)
{
	if (in->ar)
		archive_read_free(in->ar);
	in->ar = NULL;
	free(in->ar_name);
	in->ar_name = NULL;
}

static int ar_error(struct tn_input *in, const char *what)
{
	const char *msg = archive_error_string(in->ar);
	return tn_fail(archive_errno(in->ar) == ENOENT || archive_errno(in->ar) == EACCES
			       ? TN_EIO : TN_EDATA,
		       "%s: %s: %s", in->member ? in->member : in->ar_name, what,
		       msg ? msg : "unknown libarchive error");
}

static int open_next_file(struct tn_input *in)
{
	const char *path = in->files[in->next_file++];
	in->ar = archive_read_new();
	in->ar_name = tn_strdup(path);
	if (!in->ar || !in->ar_name)
		return tn_fail(TN_ENOMEM, "out of memory");
	in->ar_is_archive = is_archive_name(path);
	/* only what tn documents: fewer formats, fewer libraries pulled in */
	archive_read_support_filter_gzip(in->ar);
	archive_read_support_filter_xz(in->ar);
	archive_read_support_filter_lzma(in->ar);
	archive_read_support_filter_zstd(in->ar);
	archive_read_support_filter_bzip2(in->ar);
	if (in->ar_is_archive) {
		archive_read_support_format_tar(in->ar);
		archive_read_support_format_zip(in->ar);
	} else {
		archive_read_support_format_raw(in->ar);
	}
	int r = strcmp(path, "-") == 0 ? archive_read_open_fd(in->ar, 0, 1 << 20)
				       : archive_read_open_filename(in->ar, path, 1 << 20);
	if (r != ARCHIVE_OK) {
		free(in->member);
		in->member = NULL;
		return ar_error(in, "cannot open");
	}
	return TN_OK;
}

static int read_member(struct tn_input *in)
{
	in->len = in->pos = 0;
	for (;;) {
		if (in->cap - in->len < (1 << 20)) {
			size_t c = in->cap ? in->cap * 2 : (4 << 20);
			uint8_t *b = tn_realloc(in->buf, c);
			if (!b)
				return TN_ENOMEM;
			in->buf = b;
			in->cap = c;
		}
		la_ssize_t r = archive_read_data(in->ar, in->buf + in->len, in->cap - in->len);
		if (r < 0)
			return ar_error(in, "cannot read");
		if (r == 0)
			break;
		in->len += (size_t)r;
	}
	in->have_buf = 1;
	in->line = 1;
	return TN_OK;
}

/* Load the next file or archive member into buf; *eof at the end. */
static int load_next(struct tn_input *in, int *eof)
{
	for (;;) {
		if (!in->ar) {
			if (in->next_file == in->n_files) {
				*eof = 1;
				return TN_OK;
			}
			const char *path = in->files[in->next_file];
			if (!is_archive_name(path) && !is_compressed_name(path)) {
				in->next_file++;
				return read_plain(in, path);
			}
			int rc = open_next_file(in);
			if (rc)
				return rc;
		}
		struct archive_entry *e;
		int r = archive_read_next_header(in->ar, &e);
		if (r == ARCHIVE_EOF) {
			close_archive(in);
			continue;
		}
		if (r < ARCHIVE_WARN)
			return ar_error(in, "cannot read the next member");
		if (in->ar_is_archive && archive_entry_filetype(e) != AE_IFREG)
			continue;
		free(in->member);
		size_t l = strlen(in->ar_name) + strlen(archive_entry_pathname(e) ? archive_entry_pathname(e) : "") + 2;
		if (!(in->member = tn_malloc(l)))
			return TN_ENOMEM;
		if (in->ar_is_archive)
			snprintf(in->member, l, "%s:%s", in->ar_name, archive_entry_pathname(e));
		else
			snprintf(in->member, l, "%s", in->ar_name);
		return read_member(in);
	}
}

static int next_jsonl(struct tn_input *in, const uint8_t **doc, size_t *len, int *got)
{
	while (in->pos < in->len) {
		const uint8_t *p = in->buf + in->pos;
		const uint8_t *eol = memchr(p, '\n', in->len - in->pos);
		size_t l = eol ? (size_t)(eol - p) : in->len - in->pos;
		in->pos += l + (eol ? 1 : 0);
		uint64_t line = in->line++;
		size_t k = 0;
		while (k < l && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
			k++;
		if (k == l)
			continue; /* blank line */
		json_error_t err;
		json_t *v = json_loadb((const char *)p, l, JSON_ALLOW_NUL, &err);
		json_t *f = json_is_object(v) ? json_object_get(v, in->o.jsonl_field) : NULL;
		if (!json_is_string(f)) {
			json_decref(v);
			return tn_fail(TN_EDATA, "%s: line %llu: %s", in->member,
				       (unsigned long long)line,
				       !v ? err.text : "no string field named by --jsonl-field");
		}
		free(in->doc);
		in->doc = tn_malloc(json_string_length(f) + 1);
		if (!in->doc) {
			json_decref(v);
			return TN_ENOMEM;
		}
		*len = json_string_length(f);
		memcpy(in->doc, json_string_value(f), *len);
		json_decref(v);
		*doc = (const uint8_t *)in->doc;
		*got = 1;
		return TN_OK;
	}
	return TN_OK;
}

/* The next document of buf, if any is left. */
static int cut_next(struct tn_input *in, const uint8_t **doc, size_t *len, int *got)
{
	*got = 0;
	if (in->o.jsonl_field)
		return next_jsonl(in, doc, len, got);
	if (in->o.cut == TN_CUT_FILE) {
		if (in->pos == 0 && in->have_buf) {
			*doc = in->buf;
			*len = in->len;
			in->pos = in->len + 1;
			*got = 1;
		}
		return TN_OK;
	}
	if (in->pos > in->len || (in->pos == in->len && (in->o.cut == TN_CUT_LINES || in->len > 0)))
		return TN_OK;
	const uint8_t *p = in->buf + in->pos;
	size_t rest = in->len - in->pos;
	if (in->o.cut == TN_CUT_LINES) {
		const uint8_t *eol = memchr(p, '\n', rest);
		*len = eol ? (size_t)(eol - p) : rest;
		in->pos += *len + 1;
	} else {
		const uint8_t *sep = memmem(p, rest, EOT_LINE, sizeof EOT_LINE - 1);
		*len = sep ? (size_t)(sep - p) + 1 : rest; /* keep the doc's own LF */
		in->pos = sep ? (size_t)(sep - in->buf) + sizeof EOT_LINE - 1 : in->len + 1;
	}
	*doc = p;
	*got = 1;
	return TN_OK;
}

int tn_input_next(struct tn_input *in, const uint8_t **doc, size_t *len, int *eof)
{
	*eof = 0;
	for (;;) {
		int got = 0;
		int rc = in->have_buf ? cut_next(in, doc, len, &got) : TN_OK;
		if (rc || got)
			return rc;
		in->have_buf = 0;
		if ((rc = load_next(in, eof)) || *eof)
			return rc;
	}
}

void tn_input_free(struct tn_input *in)
{
	if (!in)
		return;
	close_archive(in);
	for (size_t i = 0; i < in->n_files; i++)
		free(in->files[i]);
	free(in->files);
	free(in->member);
	free(in->buf);
	free(in->doc);
	free(in);
}
