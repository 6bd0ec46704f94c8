#!/bin/bash
# Provide a working CRIU >= 4.1 for ociruntime's checkpoint/restore tests, in a project-owned prefix
# (never on the system PATH):  $CRIU_PREFIX/<version>/criu, plus $CRIU_PREFIX/current -> <version>.
# Debian 12's criu 3.17 cannot start on kernels >= 6.13 ([vvar_vclock]); 4.1 and later can.
# Source: the upstream tarball of the next Debian release's criu package (criu_<v>.orig.tar.xz), taken with
# `apt-get source --download-only` through a private apt configuration: the archive's signed Sources index
# checks the tarball's hash, and the host's apt state (lists, cache, sources) is left untouched.
# The build is cached outside the checkout, keyed by version: a second run costs one `criu check`.
set -euo pipefail
PREFIX=${CRIU_PREFIX:-/var/tmp/ociruntime-criu}
SUITE=${CRIU_SUITE:-trixie}
mkdir -p "$PREFIX"
exec 9>"$PREFIX/.lock"; flock 9

works() { "$1" --version >/dev/null 2>&1 && "$1" check >/dev/null 2>&1; }

if [ -x "$PREFIX/current/criu" ] && works "$PREFIX/current/criu"; then
  "$PREFIX/current/criu" --version | head -1; exit 0
fi

export DEBIAN_FRONTEND=noninteractive
DEPS="build-essential pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
      python3-protobuf libnl-3-dev libnl-route-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev
      libnftables-dev uuid-dev libaio-dev iproute2 iptables xz-utils"
missing=""; for p in $DEPS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=900 update -qq &&
      apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing >/dev/null; }
fi

WORK=$PREFIX/.work; D=$WORK/apt-$SUITE
rm -rf "$WORK"; mkdir -p "$D/lists/partial" "$D/cache/archives/partial" "$D/src"
URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$URI" ] || URI=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$URI" ] || { echo "get-criu: no Debian archive in the host's apt sources (debian.sources / sources.list)" >&2; exit 1; }
printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$URI" "$SUITE" > "$D/src.sources"
O=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$D" -o Dir::State::Lists="$D/lists"
   -o Dir::Cache="$D/cache" -o APT::Sandbox::User=root)
apt-get "${O[@]}" -qq update
# only the .orig tarball is needed (apt exits non-zero when it cannot unpack without dpkg-dev's helpers)
(cd "$D/src" && apt-get "${O[@]}" source --download-only criu >/dev/null 2>&1 || true)
T=$(ls "$D"/src/criu_*.orig.tar.* 2>/dev/null | tail -1 || true)
[ -f "$T" ] || { echo "get-criu: no criu source tarball from $URI $SUITE" >&2; exit 1; }
V=$(basename "$T" | sed -E 's/^criu_([0-9.]+)\.orig.*/\1/')
if [ -x "$PREFIX/$V/criu" ] && works "$PREFIX/$V/criu"; then
  ln -sfn "$V" "$PREFIX/current"; rm -rf "$WORK"; "$PREFIX/$V/criu" --version | head -1; exit 0
fi
mkdir -p "$WORK/src" && tar -xf "$T" -C "$WORK/src" --strip-components=1
make -C "$WORK/src" -j"$(nproc)" criu >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$PREFIX/$V.new" && install -m 0755 "$WORK/src/criu/criu" "$PREFIX/$V.new/criu"
works "$PREFIX/$V.new/criu" || { "$PREFIX/$V.new/criu" check >&2 || true; echo "get-criu: the built criu $V does not pass 'criu check'" >&2; exit 1; }
rm -rf "$PREFIX/$V" && mv "$PREFIX/$V.new" "$PREFIX/$V" && ln -sfn "$V" "$PREFIX/current"
rm -rf "$WORK"
"$PREFIX/current/criu" --version | head -1
