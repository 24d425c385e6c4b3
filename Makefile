# pyzfs — build, test, demo, install. `make deps` installs the Debian packages it needs.
SWIFT_BIN ?= /opt/swift/usr/bin
export PATH := $(SWIFT_BIN):$(PATH)
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin

# Debian packages: the libraries pyzfs links, the FUSE tools, and what the tests use.
DEB_PACKAGES = libfuse3-dev fuse3 libzip-dev libdeflate-dev pkg-config gcc python3

.PHONY: all build debug test demo deps install uninstall bench clean

all: build

build: deps
	swift build -c release

debug: deps
	swift build

# Everything: unit tests of each layer and real mounts (CI runs this).
test: deps
	swift build --build-tests
	PYZFS_BINARY=$(CURDIR)/.build/debug/pyzfs swift test --skip-build
	@! grep -q ' fuse.pyzfs ' /proc/mounts || (echo "a pyzfs mount was left behind:"; grep ' fuse.pyzfs ' /proc/mounts; exit 1)

# Builds an example app with a C extension, mounts it, runs it with the stock python3, unmounts.
demo: build
	sh docs/demo/demo.sh $(CURDIR)/.build/release/pyzfs

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

install: build
	install -d $(BINDIR)
	install -m 0755 .build/release/pyzfs $(BINDIR)/pyzfs

uninstall:
	rm -f $(BINDIR)/pyzfs

clean:
	rm -rf .build
