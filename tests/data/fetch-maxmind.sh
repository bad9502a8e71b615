#!/usr/bin/env bash
# fetch-maxmind.sh — MaxMind's own test databases for the GeoIP tests.
#
#   tests/data/fetch-maxmind.sh [DIR]     (default build/maxmind)
#
# Runs `apt-get source libmaxminddb/trixie` (bookworm's 1.7.1 lacks
# GeoLite2-Country-Test) once into DIR (a cache under build/,
# never committed) and prints the directory that holds
# t/maxmind-db/test-data/*.mmdb and t/maxmind-db/source-data/*.json. Adds
# the deb-src entries first when they are missing, the way
# cmake/win-deps.sh does (as root, or with sudo). Exits 1 when the source
# cannot be had (offline, no deb-src).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
top=${1:-$root/build/maxmind}
mkdir -p "$top"
top=$(cd "$top" && pwd)
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

want=t/maxmind-db/test-data/GeoLite2-Country-Test.mmdb
for d in "$top"/libmaxminddb-*; do
    if [ -f "$d/$want" ]; then
        printf '%s\n' "$d"
        exit 0
    fi
done

list=/etc/apt/sources.list.d/condgate-deb-src.sources
if [ ! -f "$list" ]; then
    echo "fetch-maxmind: adding deb-src entries ($list)" >&2
    $SUDO tee "$list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO apt-get update -q >&2
fi

tmp="$top/tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get source -q libmaxminddb/trixie >&2) || {
    echo "fetch-maxmind: apt-get source libmaxminddb failed (deb-src entries, network?)" >&2
    exit 1
}
dir=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'libmaxminddb-*' | head -n1)
if [ -z "$dir" ] || [ ! -f "$dir/$want" ]; then
    echo "fetch-maxmind: the source package has no $want" >&2
    exit 1
fi
dest="$top/$(basename "$dir")"
rm -rf "$dest"
mv "$dir" "$dest"
printf '%s\n' "$dest"
