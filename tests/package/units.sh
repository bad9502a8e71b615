#!/bin/sh
# The systemd units and the configuration the package installs, checked from
# the build tree (ctest: package_units):
#   units.sh CONDGATE GENDIR SBIN
# CONDGATE is the built binary, GENDIR the build's package-files directory
# (cmake/Package.cmake), SBIN the path the units start condgate from.
#  1. `systemd-analyze verify` prints nothing on the three units, with SBIN
#     pointed at CONDGATE; the man pages they name are checked when
#     src/man/ has them.
#  2. `condgate -t` accepts the configuration as installed (condgate.ini
#     with the rule files beside it).
#  3. The socket units match that configuration: condgate.socket's
#     FileDescriptorName= is a listener whose bind = is its ListenStream=,
#     and condgate-admin.socket listens where [admin] listen = says.
set -eu

condgate=$1 gen=$2 sbin=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "units.sh: FAIL: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  [ "${CG_REQUIRE_PEERS:-}" = 1 ] && fail "systemd-analyze not found (apt-get install systemd)"
  echo "units.sh: skipped: systemd-analyze not found (apt-get install systemd)"
  exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. systemd-analyze verify
mkdir -p "$tmp/units" "$tmp/man"
for u in condgate.service condgate.socket condgate-admin.socket; do
  sed "s#$sbin#$condgate#g" "$gen/$u" >"$tmp/units/$u"
done
# The units' Documentation= names the pages: verify checks they exist.
man=yes
mkdir -p "$tmp/man/man8" "$tmp/man/man5"
cp "$repo/src/man/condgate.8" "$tmp/man/man8/"
cp "$repo/src/man/condgate.ini.5" "$tmp/man/man5/"
out=$(cd "$tmp/units" && MANPATH="$tmp/man" systemd-analyze verify --man=$man \
  ./condgate.service ./condgate.socket ./condgate-admin.socket 2>&1) ||
  fail "systemd-analyze verify (man=$man): $out"
[ -z "$out" ] || fail "systemd-analyze verify (man=$man) is not clean: $out"
echo "ok: systemd-analyze verify (man pages checked: $man)"

# 2. condgate -t on the installed configuration
mkdir -p "$tmp/etc"
cp "$gen/condgate.ini" "$repo/config/rules.json" "$repo/config/blocklist.netset" "$tmp/etc/"
"$condgate" -t -c "$tmp/etc/condgate.ini" >"$tmp/t.out" 2>&1 ||
  fail "condgate -t on the packaged condgate.ini: $(cat "$tmp/t.out")"
grep -q "state_file=/var/lib/condgate/condgate.state.json " "$tmp/t.out" ||
  fail "the packaged condgate.ini keeps its state outside /var/lib/condgate: $(grep state_file "$tmp/t.out")"
echo "ok: condgate -t on the packaged condgate.ini"

# 3. the socket units against the configuration
key() { sed -n "s/^$2=//p" "$gen/$1"; }
name=$(key condgate.socket FileDescriptorName)
stream=$(key condgate.socket ListenStream)
bind=$(awk -v s="[listener:$name]" '
  /^\[/ { in_s = ($0 == s) }
  in_s && /^bind[ \t]*=/ { sub(/^bind[ \t]*=[ \t]*/, ""); sub(/[ \t]+;.*$/, ""); print }
' "$gen/condgate.ini")
[ -n "$bind" ] || fail "condgate.socket names listener '$name', which condgate.ini does not have"
[ "$bind" = "$stream" ] ||
  fail "condgate.socket listens on $stream, listener $name binds $bind"
admin=$(awk '
  /^\[/ { in_s = ($0 == "[admin]") }
  in_s && /^listen[ \t]*=/ { sub(/^listen[ \t]*=[ \t]*/, ""); sub(/[ \t]+;.*$/, ""); print }
' "$gen/condgate.ini")
[ "$(key condgate-admin.socket FileDescriptorName)" = admin ] ||
  fail "condgate-admin.socket: FileDescriptorName is not admin"
[ "$(key condgate-admin.socket ListenStream)" = "$admin" ] ||
  fail "condgate-admin.socket listens on $(key condgate-admin.socket ListenStream), [admin] on $admin"
echo "ok: condgate.socket = listener $name ($bind), condgate-admin.socket = [admin] ($admin)"
