# rpr — build, run, test, install.
#
#   make            bin/rprd and bin/rprctl
#   make run        build, start rprd in the foreground on ./.rpr, apply examples/quickstart
#   make check      build (plain and ASan+UBSan) and run every test
#   make deps       install the Debian packages the build and the tests need
#   make bench      run the benchmarks under tests/bench
#   make install    PREFIX=/usr DESTDIR=... : binaries, systemd units, web assets, man pages
#   make deb        build/deb/rpr_VERSION_ARCH.deb

CC      ?= gcc
PKGS    := libh2o-evloop libssh2 yaml-0.1 jansson libsystemd libcurl sqlite3 libgit2
DEB_PKGS := build-essential pkg-config libh2o-evloop-dev libssl-dev libssh2-1-dev libyaml-dev \
	libjansson-dev libsystemd-dev libcurl4-openssl-dev libsqlite3-dev libgit2-dev \
	libcmocka-dev python3 python3-pytest python3-yaml wrk openssh-server git sqlite3 procps curl \
	systemd lintian chromium clang libclang-rt-dev podman runc busybox-static

SAN ?= 0
ifeq ($(SAN),1)
B        := build/asan
BINDIR   := build/asan/bin
OPTFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
B        := build/release
BINDIR   := bin
OPTFLAGS := -O2 -g
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lssl -lcrypto
CFLAGS  += -std=c17 -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -pthread -Wall -Wextra -Werror \
	-Wno-missing-field-initializers $(OPTFLAGS) -Ipkg -I$(B)/gen $(PKG_CFLAGS)
LDFLAGS += -pthread $(OPTFLAGS)

MODULES := base egress yaml resource store auth logfile controller ssh agent server github gitremote token repo sync run runner binding command pipeline webhook systemd api client
$(foreach m,$(MODULES),$(eval SRC_$(m) := $(wildcard pkg/$(m)/*.c)))
$(foreach m,$(MODULES),$(eval OBJ_$(m) := $(patsubst %.c,$(B)/%.o,$(SRC_$(m)))))
OBJ_resource += $(B)/gen/kinds-embed.o

LIB = $(B)/lib$(1).a
RPRD_LIBS   := $(call LIB,api) $(call LIB,sync) $(call LIB,auth) $(call LIB,webhook) $(call LIB,pipeline) $(call LIB,command) $(call LIB,binding) $(call LIB,runner) $(call LIB,run) $(call LIB,repo) $(call LIB,server) $(call LIB,agent) $(call LIB,token) $(call LIB,github) $(call LIB,gitremote) $(call LIB,controller) $(call LIB,ssh) $(call LIB,logfile) $(call LIB,systemd) \
	$(call LIB,egress) $(call LIB,store) $(call LIB,resource) $(call LIB,yaml) $(call LIB,base)
RPRCTL_LIBS := $(call LIB,client) $(call LIB,resource) $(call LIB,yaml) $(call LIB,base)
TEST_LIBS   := $(RPRD_LIBS) $(call LIB,client)

RPRD_SRC   := $(wildcard cmd/rprd/*.c)
RPRCTL_SRC := $(wildcard cmd/rprctl/*.c)
UNIT_SRC   := $(wildcard tests/unit/test-*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
KINDS      := $(sort $(wildcard manifests/kinds/*.yaml))
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.1.0)
CFLAGS     += -DRPR_VERSION='"$(VERSION)"'

.PHONY: all deps check-deps run check unit integration browser browser-deps asan bench bench-deps clean install deb format
all: $(BINDIR)/rprd $(BINDIR)/rprctl $(BINDIR)/rpr-agent

# V=1 shows the whole command lines.
Q := $(if $(filter 1,$(V)),,@)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The kind schemas, embedded as C strings so both binaries carry them.
$(B)/gen/kinds-embed.c: $(KINDS) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from manifests/kinds (one string per file); do not edit */'; \
	   echo '#include <stddef.h>'; \
	   echo 'const char *const rpr_embedded_kinds[] = {'; \
	   for f in $(KINDS); do sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ','; done; \
	   echo 'NULL };'; } > $@
$(B)/gen/kinds-embed.o: $(B)/gen/kinds-embed.c
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(foreach m,$(MODULES),$(eval $(call LIB,$(m)): $(OBJ_$(m)) ; @mkdir -p $$(dir $$@); rm -f $$@; ar rcs $$@ $$^))

$(BINDIR)/rprd: $(patsubst %.c,$(B)/%.o,$(RPRD_SRC)) $(RPRD_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
$(BINDIR)/rprctl: $(patsubst %.c,$(B)/%.o,$(RPRCTL_SRC)) $(RPRCTL_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
# rpr-agent: the agent for hosts rprd cannot reach; rprctl's client and base
# only, and pkg/agent's poll stream frames (both ends parse them alike).
RPR_AGENT_SRC := $(wildcard cmd/rpr-agent/*.c) pkg/agent/agent-frame.c
$(BINDIR)/rpr-agent: $(patsubst %.c,$(B)/%.o,$(RPR_AGENT_SRC)) $(call LIB,client) $(call LIB,base)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
# Each unit test links only the modules below it, so one module's tests do
# not wait for every other module to build.
TEST_LIBS_base     := $(call LIB,base)
TEST_LIBS_yaml     := $(call LIB,yaml) $(TEST_LIBS_base)
TEST_LIBS_resource := $(call LIB,resource) $(TEST_LIBS_yaml)
TEST_LIBS_store    := $(call LIB,store) $(TEST_LIBS_resource)
TEST_LIBS_auth     := $(call LIB,auth) $(call LIB,token) $(call LIB,controller) $(TEST_LIBS_store)
TEST_LIBS_logfile  := $(call LIB,logfile) $(TEST_LIBS_base)
TEST_LIBS_egress   := $(call LIB,egress) $(TEST_LIBS_base)
TEST_LIBS_ssh      := $(call LIB,ssh) $(TEST_LIBS_egress)
TEST_LIBS_agent    := $(call LIB,agent) $(TEST_LIBS_base)
TEST_LIBS_controller := $(call LIB,controller) $(TEST_LIBS_store)
TEST_LIBS_github   := $(call LIB,github) $(TEST_LIBS_egress)
TEST_LIBS_gitremote := $(call LIB,gitremote) $(TEST_LIBS_egress)
TEST_LIBS_token    := $(call LIB,token) $(call LIB,controller) $(TEST_LIBS_store)
TEST_LIBS_repo     := $(call LIB,repo) $(call LIB,token) $(call LIB,github) $(call LIB,gitremote) $(call LIB,controller) $(call LIB,logfile) $(call LIB,egress) $(TEST_LIBS_store)
TEST_LIBS_sync     := $(call LIB,sync) $(call LIB,auth) $(TEST_LIBS_repo)
TEST_LIBS_server   := $(call LIB,server) $(call LIB,agent) $(call LIB,token) $(call LIB,controller) $(call LIB,ssh) $(call LIB,logfile) $(call LIB,egress) $(TEST_LIBS_store)
TEST_LIBS_run      := $(call LIB,run) $(TEST_LIBS_server)
TEST_LIBS_pipeline := $(call LIB,pipeline) $(call LIB,run) $(call LIB,repo) $(call LIB,server) $(call LIB,agent) $(call LIB,token) $(call LIB,github) \
	$(call LIB,gitremote) $(call LIB,controller) $(call LIB,ssh) $(call LIB,logfile) $(call LIB,egress) $(TEST_LIBS_store)
TEST_LIBS_binding  := $(call LIB,binding) $(call LIB,run) $(call LIB,repo) $(call LIB,server) $(call LIB,agent) $(call LIB,token) $(call LIB,github) \
	$(call LIB,gitremote) $(call LIB,controller) $(call LIB,ssh) $(call LIB,logfile) $(call LIB,egress) $(TEST_LIBS_store)
.SECONDEXPANSION:
$(B)/tests/test-%: $(B)/tests/unit/test-%.o $$(or $$(TEST_LIBS_$$*),$(TEST_LIBS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

# ---- fuzzing: tests/fuzz ---------------------------------------------------
# `make fuzz` builds one libFuzzer binary per tests/fuzz/fuzz-NAME.c into
# build/fuzz/bin, against pkg/ built by clang with the fuzzer's coverage and
# ASan+UBSan in build/fuzz. `make fuzz-run` (part of `make check`) runs each
# for FUZZ_TIME seconds from its seed corpus tests/fuzz/corpus/NAME: the
# seeds first, so an input that once crashed is tried again every time. A
# crash fails the run and leaves its input in tests/fuzz/corpus/NAME/ to be
# committed with the fix; new inputs found on the way go to build/fuzz/found.
# `make fuzz-run FUZZ_TIME=300 FUZZ_TARGETS=cron` fuzzes one for longer.
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_TIME    ?= 4
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_MAKE    = $(MAKE) --no-print-directory CC=clang B=build/fuzz BINDIR=build/fuzz/bin \
	OPTFLAGS='$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link'
.PHONY: fuzz fuzz-run
fuzz: check-deps
	+@$(FUZZ_MAKE) $(patsubst %,build/fuzz/bin/fuzz-%,$(FUZZ_TARGETS))

build/fuzz/bin/fuzz-%: $(B)/tests/fuzz/fuzz-%.o $(B)/tests/fuzz/common.o $(RPRD_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz-run: fuzz
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz $$t ($(FUZZ_TIME) s)"; mkdir -p build/fuzz/found/$$t; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ASAN_OPTIONS=detect_leaks=1 \
	  build/fuzz/bin/fuzz-$$t -max_total_time=$(FUZZ_TIME) -timeout=120 -print_final_stats=1 \
	    -artifact_prefix=tests/fuzz/corpus/$$t/ build/fuzz/found/$$t tests/fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	  || { tail -n 60 build/fuzz/$$t.log; echo "fuzz $$t failed: its input is in tests/fuzz/corpus/$$t/ (crash-, timeout- or leak-)"; exit 1; }; \
	  grep -E "^stat::number_of_executed_units" build/fuzz/$$t.log; done
.PRECIOUS: build/fuzz/tests/fuzz/%.o
check: fuzz-run

# ---- dependencies ---------------------------------------------------------
deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEB_PKGS)

# Installs what is missing, and nothing when all is there.
check-deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "make deps: missing:$$missing"; $(MAKE) --no-print-directory deps; fi

# ---- the two README commands ----------------------------------------------
run: check-deps
	@$(MAKE) --no-print-directory all
	@tests/run-quickstart.sh $(BINDIR)

check: check-deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory SAN=1 all unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory browser

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ASAN_OPTIONS=detect_leaks=1 $$t; done

# Integration tests run against the sanitizer build: every request also
# checks for memory errors and leaks.
integration:
	@$(MAKE) --no-print-directory SAN=1 all
	cd tests/integration && RPR_BIN_DIR=$(CURDIR)/build/asan/bin \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=20 .

# The dashboard in Debian's chromium, driven by playwright-core (npm, with
# its lockfile), against the sanitizer build of rprd.
browser: browser-deps
	@$(MAKE) --no-print-directory SAN=1 all
	cd tests/browser && RPR_BIN_DIR=$(CURDIR)/build/asan/bin node --test dashboard.test.mjs

browser-deps:
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
	@[ -d tests/browser/node_modules/playwright-core ] || \
	  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

bench: all bench-deps
	tests/bench/apply.sh
	tests/bench/fanout.sh
	tests/bench/repos.py
	tests/bench/coldstart.py
	tests/bench/deploy.py
	tests/bench/pipeline.py
	tests/bench/sync.py
	tests/bench/runners.py
	tests/bench/agents.py

# The peers fanout.sh compares rpr with.
bench-deps:
	@command -v parallel-ssh >/dev/null && command -v ansible >/dev/null || \
	  apt-get install -y pssh ansible
	@/usr/bin/python3 -c 'import h2' 2>/dev/null || apt-get install -y python3-h2

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build bin

# ---- install and the Debian package: packaging/install.mk ---------------
include packaging/install.mk

-include $(shell find build -name '*.d' -type f 2>/dev/null)
