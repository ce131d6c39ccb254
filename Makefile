# Makefile - builds libcore (static), the tn-* programs into bin/, the CUDA
# kernels when nvcc is found (Hopper, sm_90a; CUDA=0 skips them), the tests,
# and installs. `make test` runs the CPU suite twice: optimised, and under
# AddressSanitizer + UndefinedBehaviorSanitizer (build/asan).

PREFIX  ?= /usr/local
NVCC    ?= nvcc
CUDA    ?= $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
O       ?= build/release
BIN     ?= bin
SAN     ?= 0
CFLAGS  ?= -O3 -g -march=x86-64-v2
NVFLAGS ?= -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo

PKGS = libarchive libxxhash jansson libpcre2-8 libutf8proc openblas ompi-c
ALL_CPPFLAGS = -Ilibcore -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CPPFLAGS)
ALL_CFLAGS   = -std=c11 -Wall -Wextra -Werror -pthread -fopenmp -MMD -MP $(CFLAGS)
LDLIBS_ALL   = -Wl,--as-needed $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread -fopenmp
ifeq ($(SAN),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=address,undefined
endif

LIB_SRC  = $(wildcard libcore/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(O)/%.o)
LIB      = $(O)/libcore.a
CMD_SRC  = $(wildcard cmd/tn-*.c)
PROGS    = $(CMD_SRC:cmd/%.c=$(BIN)/%)
TEST_SRC = $(wildcard tests/unit/test_*.c)
TESTS    = $(TEST_SRC:tests/unit/%.c=$(O)/tests/%)

KERN_SRC = $(wildcard kernels/*.cu)
CUDA_TEST_SRC = $(wildcard tests/cuda/test_*.c)
ifeq ($(CUDA),1)
ifneq ($(KERN_SRC),)
CUDA_TESTS   = $(CUDA_TEST_SRC:tests/cuda/%.c=$(O)/tests/%)
CUDA_HOME   ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC))))
KERN_OBJ     = $(KERN_SRC:%.cu=$(O)/%.o)
ALL_CPPFLAGS += -DTN_CUDA=1 -Ikernels -I$(CUDA_HOME)/include
LDLIBS_ALL  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcublasLt -lcublas -lcudart -lstdc++
endif
endif

.PHONY: all deps test check test-unit test-cli test-cuda demo install clean fuzz bench
# With CUDA the GPU tests are built too (so CI compiles them); they run
# only on a GPU machine, through test-cuda.
all: $(PROGS) $(CUDA_TESTS)

# Objects depend on the build's configuration, so switching CUDA or SAN
# in one object directory rebuilds what was compiled the other way.
CONFIG_STAMP = $(O)/.config-cuda$(CUDA)-san$(SAN)
$(CONFIG_STAMP):
	@mkdir -p $(O)
	@rm -f $(O)/.config-*
	@touch $@

$(LIB_OBJ) $(KERN_OBJ) $(TEST_SRC:tests/unit/%.c=$(O)/tests/unit/%.o) \
	$(CMD_SRC:cmd/%.c=$(O)/cmd/%.o): $(CONFIG_STAMP)
.SECONDARY: $(TEST_SRC:tests/unit/%.c=$(O)/tests/unit/%.o) $(CMD_SRC:cmd/%.c=$(O)/cmd/%.o)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(O)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Ilibcore -Ikernels -Xcompiler -Wall,-Wextra -Werror all-warnings -c $< -o $@

$(LIB): $(LIB_OBJ) $(KERN_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BIN)/%: $(O)/cmd/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS_ALL) -o $@

$(O)/tests/%: $(O)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS_ALL) $(shell pkg-config --libs cmocka) -o $@

$(O)/tests/test_%: tests/cuda/test_%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS_ALL) -o $@

$(O)/tests/enospc.so: tests/fault/enospc.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -Werror $< -o $@ -ldl

$(O)/tests/replay: tests/fuzz/fuzz_readers.c tests/fuzz/replay.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) tests/fuzz/fuzz_readers.c tests/fuzz/replay.c $(LIB) $(LDLIBS_ALL) -o $@

# Run the readers under libFuzzer (clang), growing tests/fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz:
	@$(MAKE) --no-print-directory O=build/fuzz BIN=build/fuzz/bin CC=clang CUDA=0 SAN=1 \
		CFLAGS="-O1 -g -fsanitize=fuzzer-no-link" build/fuzz/libcore.a
	clang $(ALL_CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_readers.c \
		build/fuzz/libcore.a $(LDLIBS_ALL) -o build/fuzz/fuzz_readers
	mkdir -p build/fuzz/new
	build/fuzz/fuzz_readers -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build/fuzz/new tests/fuzz/corpus

deps:
	@sh tests/deps.sh

# The whole CPU suite: unit tests and command-line tests, optimised, then
# again under ASan + UBSan.
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory O=build/asan BIN=build/asan/bin SAN=1 CUDA=0 check

check: $(PROGS) $(TESTS) $(O)/tests/enospc.so $(O)/tests/replay
	@sh tests/run-unit.sh $(TESTS)
	$(O)/tests/replay tests/fuzz/corpus/*
	TN_BIN=$(abspath $(BIN)) TN_TESTS=$(abspath $(O)/tests) TN_ENOSPC=$(abspath $(O)/tests/enospc.so) TN_SAN=$(SAN) \
		bats --print-output-on-failure tests/cli

# GPU tests: run on the GPU machine.
# On a machine without the Debian -dev packages (the GPU machine), build
# here and run `sh tests/run-cuda.sh` there with bin/ and build/ carried.
test-cuda: all $(O)/tests/test_model
	@O=$(O) sh tests/run-cuda.sh $(BIN)

demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	@sh share/demo.sh $(BIN)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5
	for p in $(notdir $(PROGS)); do \
		install -m 644 completions/tn.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p; done
	install -m 644 completions/_tn $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_tn

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(PROGS:$(BIN)/%=$(O)/cmd/%.d) $(TEST_SRC:tests/unit/%.c=$(O)/tests/unit/%.d)
