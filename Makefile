# ociruntime — `make run` (demo container) and `make test` (the whole suite) on a fresh Debian 12, as root.
SHELL := /bin/bash
PY := /usr/bin/python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
APT_PKGS := busybox-static libseccomp-dev runc crun musl-tools python3-venv python3-dev gcc make jq strace
PIP_PKGS := jsonschema pyroute2 cffi jeepney pytest pytest-timeout protobuf
DEMO := $(CURDIR)/demo

.PHONY: deps build run test vmkit bench bench-quick bench-criu clean criu trace-screenshot

deps: $(VENV)/.deps

$(VENV)/.deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip 'setuptools>=64,<85' wheel
	$(VPY) -m pip install -q $(PIP_PKGS)
	touch $@

build: deps
	$(VPY) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e .
	$(VPY) -m ociruntime.launcher $(VENV)/bin/ociruntime
	$(VPY) -m compileall -q ociruntime
	@test -x ociruntime/libexec/ociruntime-init

run: build
	$(VPY) -m ociruntime.demo $(DEMO)
	cd $(DEMO) && $(VENV)/bin/ociruntime --root $(DEMO)/state run demo-$$$$

# client tests (podman, containerd; rootless podman: slirp4netns, uidmap), the cgroup v2 guest (qemu TCG), the plan fuzzer (clang), netDevices (ip),
# the systemd guests (qemu TCG booting the host's own systemd + dbus; setpriv for the rootless check)
TEST_APT_PKGS := podman conmon containerd qemu-system-x86 clang uidmap iproute2 slirp4netns busybox-static systemd dbus util-linux
APT_GET := apt-get -o DPkg::Lock::Timeout=900

# CRIU >= 4.1 for checkpoint/restore (Debian 12's 3.17 cannot start on kernels >= 6.13): built from the
# upstream tarball in Debian's archive into a project-owned prefix outside the checkout, cached by version
# (tools/get-criu.sh); the tests find it through $(CRIU_PREFIX)/current. Debian's broken criu package (a
# Recommends of runc) is removed, never left on PATH.
CRIU_PREFIX ?= /var/tmp/ociruntime-criu
criu:
	@if dpkg -s criu >/dev/null 2>&1 && ! /usr/sbin/criu check >/dev/null 2>&1; then \
	  echo "removing Debian's criu $$(dpkg-query -W -f='$${Version}' criu): it cannot run on this kernel"; \
	  DEBIAN_FRONTEND=noninteractive $(APT_GET) remove -y -qq criu >/dev/null; fi
	CRIU_PREFIX=$(CRIU_PREFIX) tools/get-criu.sh
	@# the RPC client's protobuf, also in a venv made before it was a dependency
	@if [ -x $(VPY) ] && ! $(VPY) -c 'import google.protobuf' 2>/dev/null; then $(VPY) -m pip install -q protobuf; fi

test: build
	@missing=""; for p in $(TEST_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; fi
	$(MAKE) criu
	$(MAKE) vmkit
	OCIRUNTIME_TEST_CRIU=$(CRIU_PREFIX)/current/criu $(VPY) -m pytest -q

# the cgroup v2 guest's kit (Debian's kernel package + a busybox initramfs, all from apt), cached
# outside the checkout in $$OCI_VMKIT (default $${XDG_CACHE_HOME:-/var/tmp}/ociruntime-vmkit)
vmkit: build
	$(VPY) tests/vm/qemu.py --build-kit

# Benchmark against runc/crun side by side (root; see bench/README.md). Not part of `make test`.
BENCH_ARGS ?=
bench: build criu
	$(VPY) -m pip install -q 'matplotlib>=3.6'
	$(VPY) bench/run.py $(BENCH_ARGS)
	$(VPY) bench/criu.py --criu $(CRIU_PREFIX)/current/criu

# checkpoint/restore wall time only (ociruntime vs runc, the same CRIU)
bench-criu: build criu
	$(VPY) bench/criu.py --criu $(CRIU_PREFIX)/current/criu

bench-quick:
	$(MAKE) bench BENCH_ARGS=--quick

# README's pictures of a traced run in Chromium's DevTools Performance panel (root; see bench/README.md)
trace-screenshot: build
	$(VPY) bench/trace_screenshot.py

clean:
	rm -rf build *.egg-info ociruntime/_shim*.so ociruntime/libexec $(DEMO)
