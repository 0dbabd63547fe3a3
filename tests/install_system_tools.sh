#!/usr/bin/env bash
# The system tools the AV1 film-grain parity tests compare against: aomenc (Debian aom-tools) and
# dav1d. `make test` runs this before pytest. Tools already on PATH are used as they are; otherwise
# they come from Debian's packages: installed with apt-get when running as root (or with passwordless
# sudo), else downloaded without privileges and unpacked into the virtualenv ($1), with wrappers in
# $1/bin that find their libraries there.
set -euo pipefail
venv=$(cd "${1:?usage: install_system_tools.sh VENV}" && pwd)

missing=()
command -v aomenc >/dev/null || [ -x "$venv/bin/aomenc" ] || missing+=(aom-tools)
command -v dav1d >/dev/null || [ -x "$venv/bin/dav1d" ] || missing+=(dav1d)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "make test: error: the film-grain parity tests need aomenc and dav1d, and there is no apt-get" \
       "to install ${missing[*]}; install them with your package manager and re-run" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); fi
if [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; then
  echo "make test: installing ${missing[*]} with apt-get (for the AV1 film-grain parity tests)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

# No privileges: the packages and the libraries they need, unpacked under the virtualenv.
echo "make test: downloading ${missing[*]} from Debian into $venv/system-tools (no root needed)"
root="$venv/system-tools"
apt_dirs=(-o "Dir::State::Lists=$root/apt/lists" -o "Dir::Cache=$root/apt/cache" -o Debug::NoLocking=1)
mkdir -p "$root/apt/lists/partial" "$root/apt/cache/archives/partial" "$root/debs"
apt-get "${apt_dirs[@]}" update -qq
packages=("${missing[@]}")
for p in "${missing[@]}"; do
  case $p in aom-tools) packages+=(libaom3 libyuv0) ;; dav1d) packages+=(libdav1d6) ;; esac
done
(cd "$root/debs" && apt-get "${apt_dirs[@]}" download -qq "${packages[@]}")
for deb in "$root"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
libdir=$(dirname "$(find "$root/usr/lib" -name 'lib*.so.*' | head -n1)")
for tool in aomenc dav1d; do
  [ -x "$root/usr/bin/$tool" ] || continue
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$libdir" "$root/usr/bin/$tool" > "$venv/bin/$tool"
  chmod +x "$venv/bin/$tool"
done
