# ociruntime — `make run` (demo container) and `make test` (the whole suite) on a fresh Debian 12, as root.
SHELL := /bin/bash
PY := /usr/bin/python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
APT_PKGS := busybox-static libseccomp-dev runc crun musl-tools python3-venv python3-dev gcc make jq strace
PIP_PKGS := jsonschema pyroute2 cffi jeepney pytest pytest-timeout
DEMO := $(CURDIR)/demo

.PHONY: deps build run test bench bench-quick clean

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

# client tests (podman, containerd), the cgroup v2 guest (user-mode-linux), the plan fuzzer (clang), netDevices (ip),
# the systemd guests (qemu TCG booting the host's own systemd + dbus; setpriv for the rootless check)
TEST_APT_PKGS := podman conmon containerd user-mode-linux clang uidmap iproute2 qemu-system-x86 busybox-static systemd dbus util-linux

test: build
	@missing=""; for p in $(TEST_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(VPY) -m pytest -q

# Benchmark against runc/crun side by side (root; see bench/README.md). Not part of `make test`.
BENCH_ARGS ?=
bench: build
	$(VPY) -m pip install -q 'matplotlib>=3.6'
	$(VPY) bench/run.py $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench BENCH_ARGS=--quick

clean:
	rm -rf build *.egg-info ociruntime/_shim*.so ociruntime/libexec $(DEMO)
