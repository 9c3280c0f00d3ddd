# Postino build. Objects and binaries go under build/ (build/asan/ with SANITIZER set).
# Targets: all, test (unit then integration), unit, integration, run, bench, fuzz, format, clean.

PKGS      := libevent libevent_openssl libevent_pthreads openssl hiredis opendkim
CC        ?= cc
SANITIZER ?=
PYTHON    ?= python3
CONF      ?= deploy/postino.conf

ifeq ($(SANITIZER),)
BUILD := build
SANFLAGS :=
HARDEN := -D_FORTIFY_SOURCE=2
else
BUILD := build/san
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
HARDEN :=
endif

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wvla -Wpointer-arith -Wcast-qual -Wwrite-strings -Wno-unused-parameter \
        -Wimplicit-fallthrough -Wundef
ifneq ($(CI),)
WARN += -Werror
endif

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(SANFLAGS) $(HARDEN) \
           -fstack-protector-strong -fPIE -I. $(shell pkg-config --cflags $(PKGS))
LDFLAGS += -pthread -pie -Wl,-z,relro,-z,now $(SANFLAGS)
LDLIBS  := $(shell pkg-config --libs $(PKGS)) -lm
TEST_LDLIBS := $(LDLIBS) $(shell pkg-config --libs cmocka)

# Library objects: every .c of relay/, dkim/, queue/, stats/ except the two mains.
MAINS    := relay/main.c relay/postinoctl.c
LIB_SRC  := $(filter-out $(MAINS),$(wildcard relay/*.c dkim/*.c queue/*.c stats/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The dashboard (stats/dashboard/*) compiled into the library by stats/dashboard_embed.sh.
DASHBOARD_SRC := $(wildcard stats/dashboard/*)
DASHBOARD_C   := $(BUILD)/gen/stats/dashboard_assets.c
LIB_OBJ       += $(DASHBOARD_C:.c=.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
# Shared test fixtures (tests/unit/lib_*.c), linked into every unit test binary.
TESTLIB_SRC := $(wildcard tests/unit/lib_*.c)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(filter-out tests/tools/lib_%.c,$(wildcard tests/tools/*.c))
# Shared tool code (tests/tools/lib_*.c), linked into every tool.
TOOLLIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/tools/lib_*.c))
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

.SECONDARY:

.PHONY: all test unit integration run bench fuzz format format-check clean deps

all: $(BUILD)/postino $(BUILD)/postinoctl $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(DASHBOARD_C): stats/dashboard_embed.sh $(DASHBOARD_SRC)
	@mkdir -p $(dir $@)
	sh stats/dashboard_embed.sh stats/dashboard > $@.tmp && mv $@.tmp $@

$(DASHBOARD_C:.c=.o): $(DASHBOARD_C)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libpostino.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/postino: $(BUILD)/relay/main.o $(BUILD)/libpostino.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/postinoctl: $(BUILD)/relay/postinoctl.o $(BUILD)/libpostino.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(BUILD)/libpostino.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

$(BUILD)/tools/%: $(BUILD)/tests/tools/%.o $(TOOLLIB_OBJ) $(BUILD)/libpostino.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	./deploy/install-deps.sh

unit: $(UNIT_BIN) $(TOOL_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; POSTINO_BUILD=$(BUILD) $$t; done

integration: all
	POSTINO_BUILD=$(BUILD) $(PYTHON) -m unittest discover -v -s tests/integration -p 'test_*.py'

test: unit integration

run: all
	$(BUILD)/postino -c $(CONF)

bench: all
	POSTINO_BUILD=$(BUILD) $(PYTHON) tests/tools/bench.py

# libFuzzer targets over every parser of untrusted bytes (needs clang: apt-get install clang).
FUZZ_SECONDS ?= 30
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_DEPS    := relay/buf.c relay/smtp_parse.c relay/header.c relay/data_reader.c relay/dns.c \
                relay/smtp_reply.c relay/codec.c relay/bounce.c relay/bounce_parse.c \
                relay/num.c stats/request.c stats/json.c stats/rfc3339.c

build/fuzz/%: tests/fuzz/%.c $(FUZZ_DEPS)
	@mkdir -p build/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. $(FUZZ_DEPS) $< -o $@

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_BIN); do echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  mkdir -p build/fuzz/corpus-$$(basename $$t); \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus-$$(basename $$t); done

format:
	clang-format -i $(wildcard relay/*.[ch] dkim/*.[ch] queue/*.[ch] stats/*.[ch] tests/unit/*.c tests/tools/*.c)

format-check:
	clang-format --dry-run -Werror $(wildcard relay/*.[ch] dkim/*.[ch] queue/*.[ch] stats/*.[ch] tests/unit/*.c tests/tools/*.c)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
