# pyzfs — build, test, demo, install, package. `make deps` installs the Debian packages it needs; only it,
# make test, make demo and make package-test install anything (make, make build and make deb only check).
SWIFT_BIN ?= /opt/swift/usr/bin
export PATH := $(SWIFT_BIN):$(PATH)
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
SBINDIR ?= /sbin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
UNITDIR = $(DESTDIR)$(PREFIX)/lib/systemd/system
EXAMPLEDIR = $(DESTDIR)$(PREFIX)/share/doc/pyzfs/examples
# The version, defined in one place: the VERSION file (pyzfs --version reads it through
# Plugins/PyzfsVersion, the man page through make manual; packages take $(VERSION)).
VERSION := $(shell cat $(dir $(lastword $(MAKEFILE_LIST)))VERSION)
PYZFS_BIN ?= .build/release/pyzfs
MANUAL = .build/plugins/GenerateManual/outputs/pyzfs/pyzfs.1

# Debian packages: the libraries pyzfs links, the FUSE tools, and what the tests use.
DEB_PACKAGES = libfuse3-dev fuse3 libzip-dev libdeflate-dev zlib1g-dev libssl-dev pkg-config gcc python3
# The pkg-config modules the build links (Package.swift), each with its Debian package.
PKG_MODULES = fuse3:libfuse3-dev libzip:libzip-dev libdeflate:libdeflate-dev zlib:zlib1g-dev libcrypto:libssl-dev

.PHONY: all build debug test stress demo deps check-deps install install-files uninstall manual bench clean version

all: build

# The Swift runtime is linked statically: a mount or a `pyzfs run` starts ~3.5 ms sooner (no
# dynamic symbol binding of Foundation), and the binary needs no Swift runtime where it is copied.
build: check-deps
	swift build -c release --static-swift-stdlib

debug: check-deps
	swift build

# Everything: unit tests of each layer and real mounts (CI runs this).
test: deps manual
	swift build --build-tests
	@grep ' fuse.pyzfs ' /proc/mounts > .build/mounts-before || true
	@! test -s .build/mounts-before || (echo "pyzfs mounts made before this run (not counted as left behind):"; cat .build/mounts-before)
	PYZFS_BINARY=$(CURDIR)/.build/debug/pyzfs swift test --skip-build
	$(MAKE) --no-print-directory fuzz-replay
	@! grep ' fuse.pyzfs ' /proc/mounts | grep -qvxF -f .build/mounts-before || \
	  (echo "a pyzfs mount was left behind:"; grep ' fuse.pyzfs ' /proc/mounts | grep -vxF -f .build/mounts-before; exit 1)

# make test three times in a row with both CPUs kept busy: a flaky test fails it (docs/testing.md).
.PHONY: test-load
test-load: deps manual
	sh Tests/load.sh

# The stress test alone, for longer (PYZFS_STRESS_SECONDS, default 120).
stress: deps
	swift build --build-tests
	PYZFS_BINARY=$(CURDIR)/.build/debug/pyzfs PYZFS_STRESS_SECONDS=$${PYZFS_STRESS_SECONDS:-120} swift test --skip-build --filter StressTests

# Builds an example app with a C extension, mounts it, runs it with the stock python3, unmounts.
demo: deps build
	sh docs/demo/demo.sh $(CURDIR)/.build/release/pyzfs

# Times pyzfs against an extracted directory and its peers; prints medians and ratios (docs/benchmarks.md).
# BENCH_ARGS: --quick, --runs N, --only SCENARIOS, --tools TOOLS, --rebuild, --record.
bench: build
	python3 Tests/bench/bench.py $(BENCH_ARGS)

# Fuzzes every parser of archive bytes for FUZZ_SECONDS with libFuzzer and AddressSanitizer
# (Tests/Fuzz, docs/testing.md; fuzz-libfuzzer alone), then mounts every mutant of the
# field-mutation sweep (fuzz-mount). Crashes: Tests/Fuzz/.build/crashes/. FUZZ_ARGS: more libFuzzer flags.
.PHONY: fuzz fuzz-libfuzzer fuzz-replay fuzz-mount
FUZZ_SECONDS ?= 300
FUZZ_DIR = Tests/Fuzz/.build
fuzz: deps fuzz-libfuzzer fuzz-mount

fuzz-libfuzzer: deps
	swift build --package-path Tests/Fuzz --scratch-path $(FUZZ_DIR)/fuzzer -c release --product PyzfsFuzz \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
	python3 Tests/Fuzz/make_seeds.py $(FUZZ_DIR)/seeds 65536
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/crashes
	SWIFT_BACKTRACE=enable=no $(FUZZ_DIR)/fuzzer/release/PyzfsFuzz -max_len=65536 -dict=Tests/Fuzz/zip.dict \
	  -timeout=10 -rss_limit_mb=2048 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/crashes/ $(FUZZ_ARGS) $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds

# Every mutant of the field-mutation sweep (Tests/fixtures/make_mutants.py, about 4,000) mounted with
# the debug server in the foreground and walked (Tests/fixtures/mount_mutants.py --all); `make test`
# mounts one per field. MOUNT_ARGS: more arguments (--inspect-every N).
fuzz-mount: deps
	swift build --product pyzfs
	@d=$$(mktemp -d /tmp/pyzfs-fuzz-mount-XXXXXX); trap 'rm -rf --one-file-system "$$d"' EXIT; \
	  python3 Tests/fixtures/make_mutants.py "$$d" && \
	  python3 Tests/fixtures/mount_mutants.py $(CURDIR)/.build/debug/pyzfs "$$d" --all $(MOUNT_ARGS)

# Every input that ever failed the fuzzer (Tests/fixtures/fuzz-regressions) and the seeds, through the
# fuzzer's checks without libFuzzer: part of `make test`.
fuzz-replay: deps
	swift build --package-path Tests/Fuzz --scratch-path $(FUZZ_DIR)/replay --product PyzfsFuzzReplay
	python3 Tests/Fuzz/make_seeds.py $(FUZZ_DIR)/seeds
	SWIFT_BACKTRACE=enable=no $(FUZZ_DIR)/replay/debug/PyzfsFuzzReplay

# The test suite under AddressSanitizer, then ThreadSanitizer (docs/testing.md), the mounted servers
# included: PYZFS_BINARY is the sanitized pyzfs, and every process writes its reports to
# .build-asan/reports/ or .build-tsan/reports/ (a server's stderr is /dev/null); a report fails.
# ASAN_SKIP, TSAN_SKIP: tests that cannot pass under that sanitizer (swift test --skip): a peak-RSS
# bound (ASan's shadow and quarantine); the 4 GiB read (a forked server under TSan can deadlock in
# the Swift runtime) and a 2 s exit deadline (TSan's slower exit).
.PHONY: sanitize
ASAN_SKIP ?= LargeMemberTests/randomReads
TSAN_SKIP ?= MountTests/over4GiB|MountTests/listAndUnmount
sanitize: deps manual
	@status=0; for s in address thread; do \
	  if [ $$s = address ]; then d=.build-asan; skip="$(ASAN_SKIP)"; \
	    opts="ASAN_OPTIONS=detect_leaks=0:log_path=$(CURDIR)/$$d/reports/asan"; \
	  else d=.build-tsan; skip="$(TSAN_SKIP)"; \
	    opts="TSAN_OPTIONS=die_after_fork=0:log_path=$(CURDIR)/$$d/reports/tsan"; fi; \
	  echo "== $$s sanitizer ($$d)"; \
	  swift build --build-tests --sanitize=$$s --scratch-path $$d || exit 1; \
	  rm -rf $$d/reports && mkdir -p $$d/reports; \
	  env $$opts SWIFT_BACKTRACE=enable=no PYZFS_BINARY=$(CURDIR)/$$d/debug/pyzfs \
	    swift test --skip-build --sanitize=$$s --scratch-path $$d $${skip:+--skip "$$skip"} || status=1; \
	  for r in $$d/reports/*; do [ -f "$$r" ] || continue; echo "== $$r"; cat "$$r"; status=1; done; \
	done; exit $$status

# Says what a build lacks (and that make deps installs it) and fails; installs nothing.
check-deps:
	@command -v pkg-config >/dev/null || { echo "missing: pkg-config (Debian package pkg-config); make deps installs it" >&2; exit 1; }; \
	missing=""; for m in $(PKG_MODULES); do \
	  pkg-config --exists $${m%%:*} || missing="$$missing $${m#*:} (pkg-config module $${m%%:*}),"; \
	done; \
	if [ -n "$$missing" ]; then echo "missing:$${missing%,}; make deps installs them" >&2; exit 1; fi

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The binary, mount(8) helpers in /sbin (where libmount looks), the man page, shell completions,
# and the systemd units. PREFIX and DESTDIR as usual; SBINDIR=/sbin by default. The bash
# completion loses its #! line: bash-completion sources it, nothing runs it.
install: build manual install-files

install-files:
	install -d $(BINDIR) $(DESTDIR)$(SBINDIR) $(MAN1DIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR) $(UNITDIR) $(EXAMPLEDIR)
	install -m 0755 $(PYZFS_BIN) $(BINDIR)/pyzfs
	ln -sf $(PREFIX)/bin/pyzfs $(DESTDIR)$(SBINDIR)/mount.fuse.pyzfs
	ln -sf $(PREFIX)/bin/pyzfs $(DESTDIR)$(SBINDIR)/mount.pyzfs
	if [ -f $(MANUAL) ]; then install -m 0644 $(MANUAL) $(MAN1DIR)/pyzfs.1; fi
	$(PYZFS_BIN) --generate-completion-script bash > $(BASHDIR)/pyzfs
	sed -i '1{/^#!/d;}' $(BASHDIR)/pyzfs
	$(PYZFS_BIN) --generate-completion-script zsh > $(ZSHDIR)/_pyzfs
	$(PYZFS_BIN) --generate-completion-script fish > $(FISHDIR)/pyzfs.fish
	sed 's|@BINDIR@|$(PREFIX)/bin|g' mount-helpers/pyzfs@.service > $(UNITDIR)/pyzfs@.service
	install -m 0644 mount-helpers/opt-app.mount mount-helpers/Dockerfile.example $(EXAMPLEDIR)/

uninstall:
	rm -f $(BINDIR)/pyzfs $(DESTDIR)$(SBINDIR)/mount.fuse.pyzfs $(DESTDIR)$(SBINDIR)/mount.pyzfs \
	  $(MAN1DIR)/pyzfs.1 $(BASHDIR)/pyzfs $(ZSHDIR)/_pyzfs $(FISHDIR)/pyzfs.fish $(UNITDIR)/pyzfs@.service
	rm -rf $(EXAMPLEDIR)

# The man page, generated from the command line's own help by swift-argument-parser's
# generate-manual, run on the release binary. Not through its plugin (swift package
# generate-manual): that rebuilds .build/release without --static-swift-stdlib, and make install
# would then install a pyzfs that needs the toolchain's libraries. Its footer names this version
# (mdoc's .Os, which generate-manual leaves empty).
manual: build
	swift build -c release --static-swift-stdlib --product generate-manual
	mkdir -p $(dir $(MANUAL))
	.build/release/generate-manual .build/release/pyzfs --authors "pyzfs developers" -o $(dir $(MANUAL))
	sed -i 's/^\.Os$$/.Os pyzfs $(VERSION)/' $(MANUAL)
	@grep -qx '.Os pyzfs $(VERSION)' $(MANUAL) || { echo "$(MANUAL) has no .Os line to carry version $(VERSION)" >&2; exit 1; }

# Prints the version (from VERSION), for scripts: make -s version.
version:
	@echo $(VERSION)

clean:
	rm -rf .build

# --- Debian package (docs/packaging.md) ---
# make deb: pyzfs_$(VERSION)_ARCH.deb from `make install PREFIX=/usr` into a staging tree, the
# binary's Depends from dpkg-shlibdeps. make package-test: the package's lintian check (no E:)
# and its install test (Tests/package/deb-install-test.sh: apt-get install on an overlay of /,
# mount -t fuse.pyzfs, a C extension run, apt-get purge). Only package-test installs anything.
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_FILE = pyzfs_$(VERSION)_$(DEB_ARCH).deb
DEB_ROOT = .build/deb/root
# Commands make deb runs, each with its Debian package; what package-test installs besides DEB_PACKAGES.
DEB_TOOLS = dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev dpkg-parsechangelog:dpkg-dev strip:binutils objdump:binutils
DEB_TEST_PACKAGES = dpkg-dev binutils lintian
.PHONY: deb check-deb-tools package-deps package-test

deb: check-deb-tools build manual
	rm -rf $(DEB_ROOT) $(DEB_FILE)
	$(MAKE) --no-print-directory install-files DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr SBINDIR=/sbin \
	  UNITDIR=$(CURDIR)/$(DEB_ROOT)/lib/systemd/system ZSHDIR=$(CURDIR)/$(DEB_ROOT)/usr/share/zsh/vendor-completions
	sh packaging/deb/build-deb.sh $(DEB_ROOT) $(VERSION) $(DEB_FILE)

# Says which commands make deb lacks (and their packages) and fails; installs nothing.
check-deb-tools:
	@missing=""; for t in $(DEB_TOOLS); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:} (command $${t%%:*}),"; \
	done; \
	if [ -n "$$missing" ]; then echo "missing:$${missing%,}; make package-deps installs them" >&2; exit 1; fi

package-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEB_TEST_PACKAGES)"

package-test: deps package-deps
	$(MAKE) --no-print-directory deb
	lintian --fail-on error --info $(DEB_FILE)
	sh Tests/package/deb-install-test.sh $(DEB_FILE)

# ---- wheel: make wheel, make wheel-test (docs/decisions/0008-wheel.md) ----
WHEEL_DIR = .build/wheel
WHEEL_TOOLS = $(WHEEL_DIR)/tools
# Debian packages for the wheel beyond DEB_PACKAGES: dpkg-source (libzip's source package), libbz2.a.
# The tools venv: CMake, auditwheel, pipx (packaging/wheel/requirements.txt), and in wheels/ the
# pip that pipx's shared venv upgrades to, so that the test installs with --no-index.
WHEEL_DEB_PACKAGES = dpkg-dev libbz2-dev python3-venv
# The libraries linked statically into the wheel's pyzfs, one a line: NAME=ARCHIVE. Each is linked
# in as $(WHEEL_DIR)/static/libNAME.a: the wheel's build reads the pkg-config modules of
# PKG_MODULES from $(WHEEL_DIR)/pkgconfig, copies of the system's whose libdir is that directory,
# so every -L the manifest's modules give names it, the -lNAME flags find these archives, and what
# has none there (zlib) is the system's shared library. $(WHEEL_LINK_DEPS): archives one of them
# needs that no module names (libzip.a's bzip2), linked after them.
LIBDIR = /usr/lib/x86_64-linux-gnu
WHEEL_STATIC_LIBS = \
  fuse3=$(LIBDIR)/libfuse3.a \
  deflate=$(LIBDIR)/libdeflate.a \
  bz2=$(LIBDIR)/libbz2.a \
  crypto=$(LIBDIR)/libcrypto.a \
  zip=$(WHEEL_DIR)/libzip/lib/libzip.a
WHEEL_LINK_DEPS = bz2
# What the test hides from the installed pyzfs: the static libraries' shared forms, and libssl,
# which Debian's libzip.so links.
WHEEL_HIDDEN = $(foreach l,$(WHEEL_STATIC_LIBS),$(firstword $(subst =, ,$(l)))) ssl

.PHONY: wheel wheel-test package-test wheel-deps
package-test: wheel-test

wheel-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEB_PACKAGES) $(WHEEL_DEB_PACKAGES)"

$(WHEEL_TOOLS)/bin/auditwheel: packaging/wheel/requirements.txt
	rm -rf $(WHEEL_TOOLS) && python3 -m venv $(WHEEL_TOOLS)
	$(WHEEL_TOOLS)/bin/pip install -q --disable-pip-version-check -r packaging/wheel/requirements.txt
	$(WHEEL_TOOLS)/bin/pip download -q --disable-pip-version-check --only-binary :all: -d $(WHEEL_TOOLS)/wheels pip

# The wheel's pyzfs is a release build of its own (scratch path $(WHEEL_DIR)/swift: the module
# flags differ from .build/release's, and neither build undoes the other). auditwheel show names
# the manylinux tag the binary allows; the wheel is written with linux_x86_64 for it to read, then
# with that tag. No auditwheel repair: decision 0008.
wheel: wheel-deps manual $(WHEEL_TOOLS)/bin/auditwheel
	sh packaging/wheel/build-libzip.sh $(WHEEL_DIR) $(CURDIR)/$(WHEEL_TOOLS)/bin/cmake
	rm -rf $(WHEEL_DIR)/static $(WHEEL_DIR)/pkgconfig $(WHEEL_DIR)/dist $(WHEEL_DIR)/plain
	mkdir -p $(WHEEL_DIR)/static $(WHEEL_DIR)/pkgconfig
	@for l in $(WHEEL_STATIC_LIBS); do ln -s $$(realpath $${l#*=}) $(WHEEL_DIR)/static/lib$${l%%=*}.a; done
	@for m in $(PKG_MODULES); do m=$${m%%:*}; \
	  sed 's|^libdir=.*|libdir=$(CURDIR)/$(WHEEL_DIR)/static|; s|^sharedlibdir=.*|sharedlibdir=$(CURDIR)/$(WHEEL_DIR)/static|' \
	    "$$(pkg-config --variable=pcfiledir $$m)/$$m.pc" > $(WHEEL_DIR)/pkgconfig/$$m.pc; done
	rm -f $(WHEEL_DIR)/swift/release/pyzfs
	PKG_CONFIG_PATH=$(CURDIR)/$(WHEEL_DIR)/pkgconfig swift build -c release --static-swift-stdlib \
	  --scratch-path $(WHEEL_DIR)/swift --product pyzfs $(foreach l,$(WHEEL_LINK_DEPS),-Xlinker -l$(l))
	cp $(WHEEL_DIR)/swift/release/pyzfs $(WHEEL_DIR)/pyzfs && strip $(WHEEL_DIR)/pyzfs
	python3 packaging/wheel/make_wheel.py --binary $(WHEEL_DIR)/pyzfs --version $(VERSION) \
	  --manual $(MANUAL) --tag linux_x86_64 --out $(WHEEL_DIR)/plain
	$(WHEEL_TOOLS)/bin/auditwheel show $(WHEEL_DIR)/plain/*.whl | tee $(WHEEL_DIR)/auditwheel.txt
	tag=$$(tr '\n' ' ' < $(WHEEL_DIR)/auditwheel.txt | sed -n 's/.*following platform tag: *"\([a-z0-9_]*\)".*/\1/p'); \
	  test -n "$$tag" || { echo "auditwheel show named no platform tag" >&2; exit 1; }; \
	  python3 packaging/wheel/make_wheel.py --binary $(WHEEL_DIR)/pyzfs --version $(VERSION) \
	    --manual $(MANUAL) --tag $$tag --out $(WHEEL_DIR)/dist
	rm -rf $(WHEEL_DIR)/plain
	@ls -l $(WHEEL_DIR)/dist/*.whl

wheel-test: wheel
	sh packaging/wheel/wheel-test.sh $(WHEEL_DIR)/dist/*.whl $(WHEEL_TOOLS) "$(WHEEL_HIDDEN)"
