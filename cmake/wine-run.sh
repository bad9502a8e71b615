#!/bin/sh
# cmake/wine-run.sh — CMAKE_CROSSCOMPILING_EMULATOR for the windows preset:
# run a .exe under wine64 with the Wine prefix in the build tree (Wine
# writes one on first start).
#   cmake/wine-run.sh [--prefix DIR] prog.exe [args...]
# DIR defaults to $WINEPREFIX, else ./wineprefix.
set -e
if [ "${1:-}" = "--prefix" ]; then
    WINEPREFIX="$2"
    shift 2
fi
WINE64="${CG_WINE64:-}"
if [ -z "$WINE64" ]; then
    for w in /usr/lib/wine/wine64 /usr/lib64/wine/wine64 "$(command -v wine64 || true)"; do
        if [ -n "$w" ] && [ -x "$w" ]; then WINE64="$w"; break; fi
    done
fi
if [ -z "$WINE64" ]; then
    echo "wine-run.sh: wine64 not found (Debian: apt-get install wine64)" >&2
    exit 127
fi
WINEPREFIX="${WINEPREFIX:-$(pwd)/wineprefix}"
export WINEPREFIX
# No Mono or Gecko installers, no debug chatter, no window system.
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
export WINEDEBUG="${WINEDEBUG:--all}"
unset DISPLAY
exec "$WINE64" "$@"
