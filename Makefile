# pmprof — out-of-process profiler for native Linux programs.
# `make` builds build/pmprof; `make test`, `make demo`, `make bench`, `make install PREFIX=...`,
# `make sanitize` (the unit, stacks and sampler tests under ASan+UBSan), `make format`,
# `make format-check`, `make tidy`, `make compile_commands.json`, `make stress` (the fault
# suite, tests/stress/stress.py: not part of `make test`; STRESS_LOOPS=20 by default, about
# 5 minutes on 2 cores, STRESS_CASES=a,b for some cases), `make bench-scale` (stops at 4000
# threads and a 500 MB heap, bench/stops_at_scale.py). Missing Debian packages are installed
# first (as root) or the exact apt-get command is printed (as non-root).

# Every core by default. Only the top-level make adds -j: a recursive $(MAKE) inherits the
# jobserver (a sub-make forcing -j again would leave it), and a -jN on the command line wins
# (GNU make 4.3 applies it after this line). `make clean all` runs its goals in order, as
# written, rather than cleaning while the build runs.
NPROC := $(shell nproc 2>/dev/null || echo 1)
ifeq ($(MAKELEVEL),0)
MAKEFLAGS += -j$(NPROC)
endif
ifneq ($(filter clean,$(MAKECMDGOALS)),)
ifneq ($(filter-out clean,$(MAKECMDGOALS)),)
.NOTPARALLEL:
endif
endif

BUILD    ?= build
PREFIX   ?= /usr/local
CXX      ?= g++
GO       ?= go

DEPS_PACKAGES := g++ make pkg-config libdw-dev libunwind-dev libcli11-dev libfmt-dev catch2 \
                 zlib1g-dev libcpp-httplib-dev libc6-dbg elfutils libiberty-dev python3
# clang, lld, mold and rustc build the toolchain targets (tests/integration/test_toolchains.cpp),
# which perf (linux-perf) checks the cpu shares of. graphviz: `go tool pprof -http` draws with dot;
# tmux drives `pmprof top` in its tests.
TEST_PACKAGES := golang-go golang-github-google-pprof-dev protobuf-compiler valgrind gdb strace \
                 libjemalloc2 chromium clang lld mold rustc linux-perf curl graphviz tmux

PKGS     := libdw libunwind-generic fmt zlib cpp-httplib
# Only pmprof-serve links libcpp-httplib (and through it OpenSSL); src/cli/main.cpp says why.
HTTP_LIBS := -lcpp-httplib
WARN     := -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wformat=2
ifneq ($(CI),)
WERROR   ?= 1
endif
ifeq ($(WERROR),1)
WARN     += -Werror
endif
OPT      ?= -O2 -g
CXXFLAGS += -std=c++20 $(OPT) $(WARN) -Iinclude -Isrc -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Only libunwind's remote unwinder (libunwind-x86_64) is used. libunwind.so.8, the local one the
# .pc files add, would interpose _Unwind_RaiseException: every C++ exception (CLI11's --help and
# --version) then unwound through it with one rt_sigprocmask per frame. It is still loaded as
# libunwind-x86_64's dependency, so libgcc_s is made a direct one, which puts it first.
PKG_LIBS   = $(filter-out -lunwind $(HTTP_LIBS),$(shell pkg-config --libs $(PKGS) 2>/dev/null))
# libiberty (static, PIC in Debian): cplus_demangle, for C++ and Rust names (src/symbolize/demangle.cpp).
LDLIBS   += $(PKG_LIBS) -liberty -lpthread -Wl,--push-state,--no-as-needed -lgcc_s -Wl,--pop-state

SRCS       := $(sort $(wildcard src/*/*.cpp))
MAIN_SRCS  := src/cli/main.cpp src/cli/main_serve.cpp
LIB_SRCS   := $(filter-out $(MAIN_SRCS),$(SRCS))
LIB_OBJS   := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o)
# The HTTP server and `serve`'s command line: only in pmprof-serve (and the tests).
SERVE_OBJS := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard src/http/*.cpp) src/cli/serve.cpp)
CORE_OBJS  := $(filter-out $(SERVE_OBJS),$(LIB_OBJS))
TEST_SRCS  := $(sort $(wildcard tests/unit/*/*.cpp tests/integration/*.cpp tests/support/*.cpp))
TEST_OBJS  := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o)
TARGETS    := $(basename $(notdir $(wildcard tests/targets/*.cpp)))
TARGET_BINS := $(foreach t,$(TARGETS),$(BUILD)/targets/$(t)-fp $(BUILD)/targets/$(t)-nofp)
EXAMPLES   := $(basename $(notdir $(wildcard examples/*.cpp)))
EXAMPLE_BINS := $(EXAMPLES:%=$(BUILD)/examples/%)
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test-deps test unit integration demo bench install sanitize format clean \
        check-layers format-check tidy FORCE stress bench-scale
all: $(BUILD)/pmprof $(BUILD)/pmprof-serve

# ---- dependencies -------------------------------------------------------------------------
# Installs what is missing: as root with apt-get (updating the package lists first when they are
# empty), otherwise it prints the exact command and fails.
define ensure_packages
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	  grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "pmprof: installing" $$missing; \
	    if ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; then apt-get update -q; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
	      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	  else \
	    echo "pmprof: missing packages; run: sudo apt-get install -y $$missing" >&2; exit 1; \
	  fi; \
	fi
endef
deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	$(call ensure_packages,$(DEPS_PACKAGES))
	@mkdir -p $(BUILD) && touch $@
test-deps: $(BUILD)/.test-deps-ok
$(BUILD)/.test-deps-ok: $(DEPS_STAMP)
	$(call ensure_packages,$(TEST_PACKAGES))
	@touch $@

# ---- the tool -----------------------------------------------------------------------------
$(BUILD)/obj/src/os/syscall_names.o: $(BUILD)/gen/syscall_names.inc
# x86_64 syscall names generated from the kernel headers the machine has.
$(BUILD)/gen/syscall_names.inc: | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	echo '#include <sys/syscall.h>' | $(CXX) -dM -E -x c - | \
	  sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/{\2, "\1"},/p' | sort -n -t'{' -k2 > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(PKG_CFLAGS) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/pmprof: $(BUILD)/obj/src/cli/main.o $(CORE_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)
$(BUILD)/pmprof-serve: $(BUILD)/obj/src/cli/main_serve.o $(LIB_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) $(HTTP_LIBS)

# ---- tests --------------------------------------------------------------------------------
$(BUILD)/pmprof-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) $(HTTP_LIBS)

# Targets are built twice: with frame pointers and without, both -O2 with inlining and -g.
TARGET_FLAGS := -std=c++20 -O2 -g -pthread
$(BUILD)/targets/%-fp: tests/targets/%.cpp tests/targets/target_support.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(TARGET_FLAGS) -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -o $@ $<
$(BUILD)/targets/%-nofp: tests/targets/%.cpp tests/targets/target_support.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(TARGET_FLAGS) -fomit-frame-pointer -o $@ $<

# The same program from every toolchain the tests check names against (test_toolchains.cpp),
# each with and without frame pointers. g++ + GNU ld is the rule above (toolchain_target-fp,
# -nofp); then clang++ + lld, g++ + mold, and clang++ alone (GNU ld; clang 14 writes DWARF 5 and
# no .debug_aranges, which the test checks with readelf).
TOOLCHAIN_GXX   ?= g++
TOOLCHAIN_CLANG ?= clang++
TC_CXX_clang-lld := $(TOOLCHAIN_CLANG) -fuse-ld=lld
TC_CXX_gcc-mold  := $(TOOLCHAIN_GXX) -fuse-ld=mold
TC_CXX_clang     := $(TOOLCHAIN_CLANG)
TC_FP_fp   := -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
TC_FP_nofp := -fomit-frame-pointer
TOOLCHAIN_BINS := $(foreach v,clang-lld gcc-mold clang,$(foreach f,fp nofp,\
                    $(BUILD)/targets/toolchain_target-$(v)-$(f)))
define toolchain_rule
$(BUILD)/targets/toolchain_target-$(1)-$(2): tests/targets/toolchain_target.cpp \
    tests/targets/target_support.h | $(BUILD)/.test-deps-ok
	@mkdir -p $$(dir $$@)
	$$(TC_CXX_$(1)) $$(TARGET_FLAGS) $$(TC_FP_$(2)) -o $$@ $$<
endef
$(foreach v,clang-lld gcc-mold clang,$(foreach f,fp nofp,$(eval $(call toolchain_rule,$(v),$(f)))))

# The Rust target, with Debian's rustc (1.63; a rustup rustc earlier in PATH is not what CI has):
# legacy symbol mangling (1.63's default), v0 mangling, and legacy linked by lld (the default
# linker of newer Rust), each with and without frame pointers.
RUSTC      ?= /usr/bin/rustc
RUST_FLAGS := -O -g --edition 2021 --crate-name rust_target
RUST_MANGLE_legacy :=
RUST_MANGLE_v0     := -C symbol-mangling-version=v0
RUST_MANGLE_lld    := -C link-arg=-fuse-ld=lld
RUST_FP_fp   := -C force-frame-pointers=yes
RUST_FP_nofp :=
RUST_BINS := $(foreach v,legacy v0 lld,$(foreach f,fp nofp,$(BUILD)/targets/rust_target-$(v)-$(f)))
define rust_rule
$(BUILD)/targets/rust_target-$(1)-$(2): tests/targets/rust_target.rs | $(BUILD)/.test-deps-ok
	@mkdir -p $$(dir $$@)
	$$(RUSTC) $$(RUST_FLAGS) $$(RUST_MANGLE_$(1)) $$(RUST_FP_$(2)) -o $$@ $$<
endef
$(foreach v,legacy v0 lld,$(foreach f,fp nofp,$(eval $(call rust_rule,$(v),$(f)))))

# heap --sites refuses static binaries (tests/integration/test_heap_sites.cpp): one with symbols,
# one stripped.
$(BUILD)/targets/alloc_sites-static: tests/targets/alloc_sites.cpp tests/targets/target_support.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(TARGET_FLAGS) -static -o $@ $< 2>/dev/null
$(BUILD)/targets/alloc_sites-static-stripped: $(BUILD)/targets/alloc_sites-static
	strip -o $@ $<

$(BUILD)/examples/%: examples/%.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 -O2 -g -pthread -o $@ $<

# A small Go checker over github.com/google/pprof/profile (Debian's GOPATH, no network).
$(BUILD)/pprofcheck: tests/tools/pprofcheck/main.go $(BUILD)/.test-deps-ok
	@mkdir -p $(BUILD)/gocache
	cd tests/tools/pprofcheck && GO111MODULE=off GOPATH=/usr/share/gocode \
	  GOCACHE=$(abspath $(BUILD))/gocache $(GO) build -o $(abspath $@) .

# Runs a command under a seccomp filter denying the named system calls (the fallback tests).
$(BUILD)/seccomp_exec: tests/tools/seccomp_exec.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 -O2 -Wall -Wextra -o $@ $<

TEST_BINS := $(BUILD)/pmprof $(BUILD)/pmprof-serve $(BUILD)/pmprof-tests $(TARGET_BINS) \
             $(TOOLCHAIN_BINS) $(RUST_BINS) $(EXAMPLE_BINS) $(BUILD)/pprofcheck \
             $(BUILD)/seccomp_exec $(BUILD)/targets/alloc_sites-static \
             $(BUILD)/targets/alloc_sites-static-stripped
test: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory $(TEST_BINS)
	PMPROF_CACHE_DIR=$(abspath $(BUILD))/cache PMPROF_BUILD=$(abspath $(BUILD)) $(BUILD)/pmprof-tests $(TEST_ARGS)
unit: $(BUILD)/pmprof-tests
	$(BUILD)/pmprof-tests '[unit]'
integration: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory $(TEST_BINS)
	PMPROF_CACHE_DIR=$(abspath $(BUILD))/cache PMPROF_BUILD=$(abspath $(BUILD)) $(BUILD)/pmprof-tests '[integration]'

# ---- demo, bench, install -----------------------------------------------------------------
# The demo also fetches a profile from `pmprof serve` with `go tool pprof` (a test package).
demo: $(BUILD)/.test-deps-ok $(BUILD)/pmprof $(BUILD)/pmprof-serve $(EXAMPLE_BINS)
	@BUILD=$(BUILD) examples/demo.sh

bench: $(BUILD)/.test-deps-ok $(BUILD)/pmprof
	@BUILD=$(BUILD) bench/run.sh

# The fault suite: every case STRESS_LOOPS times, rule zero checked after every run.
STRESS_LOOPS ?= 20
stress: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory $(BUILD)/pmprof $(BUILD)/pmprof-serve \
	  $(TARGET_BINS) $(BUILD)/pprofcheck $(BUILD)/seccomp_exec
	PMPROF_BUILD=$(abspath $(BUILD)) python3 tests/stress/stress.py --loops $(STRESS_LOOPS) \
	  $(if $(STRESS_CASES),--cases $(STRESS_CASES))

bench-scale: $(BUILD)/pmprof $(BUILD)/targets/stacks_target-fp $(BUILD)/targets/heap_leaks-fp
	BUILD=$(BUILD) python3 bench/stops_at_scale.py

install: $(BUILD)/pmprof $(BUILD)/pmprof-serve
	install -D -m 0755 $(BUILD)/pmprof $(DESTDIR)$(PREFIX)/bin/pmprof
	install -D -m 0755 $(BUILD)/pmprof-serve $(DESTDIR)$(PREFIX)/libexec/pmprof/pmprof-serve
	install -D -m 0644 man/pmprof.1 $(DESTDIR)$(PREFIX)/share/man/man1/pmprof.1

# Every #include against the module -> layer table (src/layers.conf).
check-layers: $(DEPS_STAMP)
	python3 tests/tools/check_layers.py

clean:
	rm -rf $(BUILD) $(SAN_BUILD) compile_commands.json

# ---- conventions: format, tidy, compile_commands.json, sanitizers -------------------------
# clang-format and clang-tidy 14 (Debian 12's), installed like the other packages.
CLANG_FORMAT ?= clang-format-14
CLANG_TIDY   ?= clang-tidy-14
CONV_PACKAGES := clang-format-14 clang-tidy-14
$(BUILD)/.conv-deps-ok: $(DEPS_STAMP)
	$(call ensure_packages,$(CONV_PACKAGES))
	@touch $@

# Every C++ file of the project, wherever it sits below these folders.
FORMAT_FILES = $(sort $(shell find src include tests examples bench -type f \
                 \( -name '*.cpp' -o -name '*.h' -o -name '*.hpp' \) 2>/dev/null))
format: $(BUILD)/.conv-deps-ok
	$(CLANG_FORMAT) -i $(FORMAT_FILES)
# Lists the files clang-format would change and fails; `make format` fixes them, and
# `clang-format-14 --dry-run FILE` shows where.
format-check: $(BUILD)/.conv-deps-ok
	@bad=$$(printf '%s\n' $(FORMAT_FILES) | xargs -P$(NPROC) -n8 sh -c \
	  'for f; do $(CLANG_FORMAT) --style=file "$$f" | cmp -s - "$$f" || echo "$$f"; done' sh | sort); \
	if [ -n "$$bad" ]; then \
	  echo "pmprof: $$(echo "$$bad" | wc -l) of $(words $(FORMAT_FILES)) files differ from" \
	    ".clang-format (make format fixes them):" >&2; \
	  echo "$$bad" | sed 's/^/  /' >&2; exit 1; \
	fi

# The compilation database clangd and clang-tidy read: one entry per translation unit of the tool
# and its tests, with the flags of the rule $(BUILD)/obj/%.o above. Rewritten only when its text
# changes, so what depends on it is not redone for nothing.
comma := ,
cc_command = $(CXX) $(CXXFLAGS) $(PKG_CFLAGS) -I$(BUILD)/gen -c $(1) -o $(BUILD)/obj/$(1:.cpp=.o)
cc_entry = {"directory": "$(CURDIR)", "file": "$(1)", "output": "$(BUILD)/obj/$(1:.cpp=.o)", \
  "command": "$(strip $(call cc_command,$(1)))"}
compile_commands.json: FORCE | $(DEPS_STAMP)
	$(file >$@.tmp,[$(subst } {,}$(comma)$(newline){,$(foreach f,$(SRCS) $(TEST_SRCS),$(call cc_entry,$(f))))])
	@cmp -s $@.tmp $@ && rm -f $@.tmp || { mv $@.tmp $@; echo "pmprof: wrote $@"; }
define newline


endef
FORCE:

# clang-tidy (checks in .clang-tidy, every warning an error) over each translation unit of src/,
# in parallel, with a stamp per file so only what changed is checked again.
TIDY_HEADERS := $(wildcard src/*/*.h include/pmprof/*/*.h)
TIDY_STAMPS  := $(SRCS:%.cpp=$(BUILD)/tidy/%.ok)
tidy: $(TIDY_STAMPS)
	@echo "pmprof: clang-tidy clean ($(words $(SRCS)) files)"
$(BUILD)/tidy/%.ok: %.cpp .clang-tidy $(TIDY_HEADERS) compile_commands.json \
    $(BUILD)/gen/syscall_names.inc | $(BUILD)/.conv-deps-ok
	@mkdir -p $(dir $@)
	@echo "clang-tidy $<"
	@$(CLANG_TIDY) --quiet -p . $< >$@.log 2>&1 || \
	  { grep -v ' generated\.$$' $@.log >&2; rm -f $@.log; exit 1; }
	@rm -f $@.log && touch $@

# ASan + UBSan: pmprof, pmprof-serve and pmprof-tests are built in $(SAN_BUILD) with the
# sanitizers (the targets, examples and helpers with their own flags, unsanitized, as users
# build them), and the unit tests and the stacks and sampler integration tests run there. Every
# report, in pmprof-tests or in a pmprof it starts, goes to a log file and fails the run.
SAN_BUILD  := build-sanitize
SAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# GCC 12 at -O1 with the sanitizers warns "may be used uninitialized" inside libstdc++'s
# <regex> (std::function moves in _NFA::_M_insert_subexpr_*): a known false positive of the
# instrumented build (GCC's manual: -fsanitize can cause spurious warnings), fatal under CI's
# -Werror. Every other warning stays an error there.
SAN_WARN   := -Wno-maybe-uninitialized
# The cpu-share tests ([shares]) compare shares under timing a sanitized build distorts: they
# run in make test, where the shares mean something; memory errors on their path are covered by
# the other sampler tests.
SAN_TESTS  ?= [unit],[stacks],[sampler]~[shares]
SAN_BINS   := $(addprefix $(SAN_BUILD)/,pmprof pmprof-serve pmprof-tests pprofcheck seccomp_exec \
                $(TARGET_BINS:$(BUILD)/%=%) $(EXAMPLE_BINS:$(BUILD)/%=%))
SAN_LOGS   := $(abspath $(SAN_BUILD))/sanitizer-logs
sanitize: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) OPT="-O1 -g $(SAN_FLAGS) $(SAN_WARN)" \
	  LDFLAGS="$(SAN_FLAGS)" $(SAN_BINS)
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@status=0; \
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:log_path=$(SAN_LOGS)/asan \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(SAN_LOGS)/ubsan \
	PMPROF_CACHE_DIR=$(abspath $(SAN_BUILD))/cache PMPROF_BUILD=$(abspath $(SAN_BUILD)) \
	  $(SAN_BUILD)/pmprof-tests '$(SAN_TESTS)' $(TEST_ARGS) || status=$$?; \
	if [ -n "$$(ls -A $(SAN_LOGS))" ]; then \
	  echo "pmprof: sanitizer reports ($(SAN_LOGS)):" >&2; cat $(SAN_LOGS)/* >&2; exit 1; \
	fi; \
	exit $$status

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(MAIN_SRCS:%.cpp=$(BUILD)/obj/%.d)

# ---- fuzzing (owner: formats) -------------------------------------------------------------
# `make fuzz` builds a libFuzzer harness (clang, ASan + UBSan) for decode_pprof and every writer
# and runs it for FUZZ_SECONDS over tests/corpus/fuzz, where new interesting inputs are kept.
# tests/unit/test_report_corpus.cpp replays that corpus in every `make test` (no clang needed).
FUZZ_SECONDS ?= 300
FUZZ_CXX     ?= clang++
FUZZ_SRCS    := tests/fuzz/fuzz_decode_pprof.cpp src/support/error.cpp src/profile/profile.cpp \
                src/output/protobuf_wire.cpp src/output/pprof.cpp src/output/pprof_decode.cpp \
                src/output/text.cpp src/output/folded.cpp src/output/callgrind.cpp \
                src/output/svg.cpp src/output/svg_script.cpp src/report/render.cpp src/report/diff.cpp \
                src/profile/index.cpp src/report/list.cpp src/symbolize/symbolize.cpp src/symbolize/demangle.cpp \
                src/elf/image.cpp src/support/log.cpp src/support/fd.cpp src/os/procfs.cpp src/support/types.cpp src/ptrace/memory.cpp \
                src/ptrace/peek.cpp
.PHONY: fuzz fuzz-build
fuzz-build: $(BUILD)/fuzz_decode_pprof
$(BUILD)/fuzz_decode_pprof: $(FUZZ_SRCS) $(wildcard src/*/*.h include/pmprof/*/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Iinclude -Isrc $(PKG_CFLAGS) -o $@ $(FUZZ_SRCS) $(PKG_LIBS) -liberty
fuzz: $(BUILD)/fuzz_decode_pprof
	@mkdir -p tests/corpus/fuzz
	$(BUILD)/fuzz_decode_pprof -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	  -rss_limit_mb=4096 -print_final_stats=1 tests/corpus/fuzz

# ---- benchmark packages (owner: bench) ----------------------------------------------------
# `make bench` (bench/run.sh) also needs perf (the comparison and the sched trace that measures
# stop windows) and python3 (the driver and the report). A prerequisite-only rule adds the stamp
# to the `bench` target above.
BENCH_PACKAGES := linux-perf python3
$(BUILD)/.bench-deps-ok: $(BUILD)/.test-deps-ok
	$(call ensure_packages,$(BENCH_PACKAGES))
	@touch $@
bench: $(BUILD)/.bench-deps-ok
