/* bench_model.c - the options shared by the model benchmarks (bench.h). */
#include "bench.h"
#include "cli.h"
#include "util.h"

int tn_bench_model_option(const char *prog, struct tn_bench_model *o, int c, const char *arg)
{
	switch (c) {
	case 'p':
		o->preset = arg;
		return TN_OK;
	case 'v':
		if (tn_cli_u64(prog, "--vocab-size", arg, &o->vocab, 0) || !o->vocab ||
		    o->vocab > INT32_MAX)
			return tn_cli_usage_error(prog, "--vocab-size: 1 to 2^31-1");
		return TN_OK;
	case 'B':
		if (!(o->be = tn_backend_find(arg)))
			return tn_cli_usage_error(prog, "--backend: %s", tn_errmsg());
		return TN_OK;
	case 'j':
		o->json = 1;
		return TN_OK;
	default:
		return 1;
	}
}
