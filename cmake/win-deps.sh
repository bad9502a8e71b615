#!/usr/bin/env bash
# cmake/win-deps.sh — cross-build condgate's libraries for 64-bit Windows
# (mingw-w64) from Debian's own source packages, into a cached prefix.
#
#   cmake/win-deps.sh [DIR]        DIR defaults to build/win-deps
#
# Result: DIR/x86_64 holds static libraries, headers and pkg-config files of
# inih, cJSON, libuv, libmicrohttpd and cmocka; the `windows` preset reads it.
# Each library is rebuilt only when its Debian version changes (a stamp per
# library in DIR/stamps), so a second run takes seconds. Nothing here is
# committed: DIR is under build/, which git ignores.
#
# Needs: mingw-w64, cmake, ninja-build, make, dpkg-dev (apt-get source) and
# deb-src entries; the script adds those (bookworm, and trixie for libinih,
# whose bookworm source tarball is missing on the mirror used here) when it
# runs as root or with sudo.
set -euo pipefail

SRC_DIR="$(cd "$(dirname "$0")/.." && pwd)"
TOP="${1:-$SRC_DIR/build/win-deps}"
mkdir -p "$TOP"
TOP="$(cd "$TOP" && pwd)"
HOST=x86_64-w64-mingw32
PREFIX="$TOP/x86_64"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "$PREFIX" "$TOP/src" "$TOP/stamps"

# package/suite for apt-get source: bookworm's, the versions the Linux build
# uses, except libinih from trixie (see above).
PACKAGES=(libinih/trixie cjson/bookworm libuv1/bookworm libmicrohttpd/bookworm cmocka/bookworm)

say() { printf 'win-deps: %s\n' "$*"; }

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

ensure_deb_src() {
    local list=/etc/apt/sources.list.d/condgate-deb-src.sources
    if [ -f "$list" ]; then
        return
    fi
    say "adding deb-src entries ($list)"
    $SUDO tee "$list" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    $SUDO apt-get update -q
}

# Fetch and unpack one source package (once per version); prints its
# directory. The version comes from apt's idea of the newest source.
fetch() {
    local spec="$1" name="${1%%/*}" ver dir
    ver="$(apt-get source --print-uris -qq "$spec" 2>/dev/null | awk '{print $2}' |
        sed -n "s/^${name}_\(.*\)\.dsc\$/\1/p" | head -n1)"
    if [ -z "$ver" ]; then
        echo "win-deps: no source for $spec (deb-src entries missing?)" >&2
        exit 1
    fi
    dir="$TOP/src/$name-$ver"
    if [ ! -d "$dir" ]; then
        rm -rf "$TOP/src/tmp-$name"
        mkdir -p "$TOP/src/tmp-$name"
        (cd "$TOP/src/tmp-$name" && apt-get source -q "$spec" >&2)
        # apt-get source unpacks into name-upstreamversion; keep just that.
        mv "$(find "$TOP/src/tmp-$name" -mindepth 1 -maxdepth 1 -type d | head -n1)" "$dir"
        rm -rf "$TOP/src/tmp-$name"
    fi
    printf '%s %s\n' "$ver" "$dir"
}

cmake_build() {
    local srcdir="$1" bdir="$2"
    shift 2
    rm -rf "$bdir"
    cmake -S "$srcdir" -B "$bdir" -G Ninja \
        -DCMAKE_TOOLCHAIN_FILE="$SRC_DIR/cmake/mingw-w64-x86_64.cmake" \
        -DCG_NO_EMULATOR=ON \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DBUILD_SHARED_LIBS=OFF -DCMAKE_POLICY_DEFAULT_CMP0077=NEW "$@" >/dev/null
    cmake --build "$bdir" -j "$JOBS" >/dev/null
    cmake --install "$bdir" >/dev/null
}

build_libinih() {
    # Debian builds inih with meson (distro_install: default options plus
    # INI_HANDLER_LINENO=1, which its pkg-config file passes on); the library
    # is one file, so compile it directly with the same macros.
    local dir="$1" b="$TOP/src/build-inih"
    rm -rf "$b" && mkdir -p "$b"
    $HOST-gcc -O2 -DINI_HANDLER_LINENO=1 -c "$dir/ini.c" -o "$b/ini.o"
    $HOST-ar rcs "$PREFIX/lib/libinih.a" "$b/ini.o"
    install -m 644 "$dir/ini.h" "$PREFIX/include/ini.h"
    cat >"$PREFIX/lib/pkgconfig/inih.pc" <<EOF
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: inih
Description: simple .INI file parser (static, mingw-w64)
Version: ${2%%-*}
Libs: -L\${libdir} -linih
Cflags: -I\${includedir} -DINI_HANDLER_LINENO=1
EOF
}

build_cjson() {
    # Its own flags include -fstack-protector-strong, which would need
    # mingw's libssp at every link.
    cmake_build "$1" "$TOP/src/build-cjson" -DENABLE_CJSON_TEST=OFF -DENABLE_CJSON_UTILS=OFF \
        -DENABLE_CUSTOM_COMPILER_FLAGS=OFF \
        -DBUILD_SHARED_AND_STATIC_LIBS=OFF -DENABLE_TARGET_EXPORT=OFF
}

build_libuv1() {
    cmake_build "$1" "$TOP/src/build-libuv" -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF
    # libuv installs a DLL and a static libuv_a; keep the static one under
    # the name the pkg-config file uses, so nothing needs a DLL at run time.
    rm -f "$PREFIX/bin/libuv.dll" "$PREFIX/lib/libuv.dll.a"
    if [ -f "$PREFIX/lib/libuv_a.a" ]; then
        cp "$PREFIX/lib/libuv_a.a" "$PREFIX/lib/libuv.a"
    fi
    # Static users need libuv's system libraries on the Libs line.
    if [ -f "$PREFIX/lib/pkgconfig/libuv-static.pc" ]; then
        sed -e 's/-luv_a/-luv/' "$PREFIX/lib/pkgconfig/libuv-static.pc" \
            >"$PREFIX/lib/pkgconfig/libuv.pc"
    fi
}

build_libmicrohttpd() {
    local dir="$1" b="$TOP/src/build-mhd"
    rm -rf "$b" && mkdir -p "$b"
    (cd "$b" && "$dir/configure" -q --host=$HOST --prefix="$PREFIX" \
        --enable-static --disable-shared --disable-https --without-gnutls \
        --disable-curl --disable-doc --disable-examples --disable-tools \
        --disable-dauth --disable-bauth --disable-postprocessor >/dev/null &&
        make -s -j "$JOBS" >/dev/null && make -s install >/dev/null)
}

build_cmocka() {
    cmake_build "$1" "$TOP/src/build-cmocka" -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF \
        -DUNIT_TESTING=OFF -DPICKY_DEVELOPER=OFF
    # cmocka 1.1 installs a DLL plus cmocka-static; link the static one.
    rm -f "$PREFIX/bin/libcmocka.dll" "$PREFIX/lib/libcmocka.dll.a"
    if [ -f "$PREFIX/lib/libcmocka-static.a" ]; then
        cp "$PREFIX/lib/libcmocka-static.a" "$PREFIX/lib/libcmocka.a"
    fi
}

ensure_deb_src
mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
for spec in "${PACKAGES[@]}"; do
    name="${spec%%/*}"
    read -r ver dir < <(fetch "$spec")
    stamp="$TOP/stamps/$name-$ver"
    if [ -f "$stamp" ]; then
        say "$name $ver: cached"
        continue
    fi
    say "$name $ver: building"
    start=$(date +%s)
    "build_$name" "$dir" "$ver"
    rm -f "$TOP/stamps/$name-"*
    touch "$stamp"
    say "$name $ver: done in $(($(date +%s) - start)) s"
done
say "prefix: $PREFIX"
