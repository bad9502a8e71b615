#!/usr/bin/env bash
# Build condgate's Debian package, install it, check what it installed, run
# the installed daemon the way condgate.service would, and purge it.
#
#   tests/package/check.sh        (as root, from anywhere; .ci/run's last step)
#
# Needs: cmake, the build dependencies, dpkg-dev, lintian, systemd (for
# systemd-analyze; systemd need not be running), systemd-container
# (systemd-nspawn), man-db, file, curl, util-linux (setpriv, unshare),
# iproute2 (.ci/run installs them).
#
# It purges an installed condgate first (its configuration and bans too: not
# for a machine where condgate is in use) and again at the end, so it can run
# twice in a row; build/package is kept for incremental builds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/package
build=$repo/build/package
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

step() { printf -- '--- %s\n' "$*"; }
fail() { printf 'check.sh: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs and purges the package)"

purge() {
  if dpkg-query -W -f '${Status}' condgate 2>/dev/null | grep -q "installed\|config-files"; then
    apt-get purge -y -q condgate >/dev/null
  fi
}
tmp=$(mktemp -d)
cleanup() {
  rc=$?
  purge || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
purge

version=$(sed -n 's/^project(condgate VERSION \([0-9.]*\) .*/\1/p' "$repo/CMakeLists.txt")
[ -n "$version" ] || fail "no project version in CMakeLists.txt"
# The package carries the manual pages and is built with libsystemd: both
# are required, never skipped.
[ -e "$repo/src/man/condgate.8" ] && [ -e "$repo/src/man/condgate.ini.5" ] ||
  fail "no manual pages in src/man"

step "build (cmake --preset package) and cpack -G DEB"
(cd "$repo" && cmake --preset package >"$tmp/configure.log" 2>&1) ||
  { cat "$tmp/configure.log"; fail "configure"; }
(cd "$repo" && cmake --build --preset package -j2)
rm -f "$build"/condgate_*.deb
(cd "$build" && cpack -G DEB >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack"; }
debs=("$build"/condgate_*.deb)
[ ${#debs[@]} = 1 ] || fail "cpack made ${#debs[@]} packages"
deb=${debs[0]}
[ "$(basename "$deb")" = "condgate_${version}-1_amd64.deb" ] ||
  fail "package file $(basename "$deb"), expected condgate_${version}-1_amd64.deb"
ok "$(basename "$deb"), $(stat -c %s "$deb") bytes"

step "package contents and control data"
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' | sed 's#\./#/#' >"$tmp/contents"
want=(
  "-rwxr-xr-x root/root /usr/sbin/condgate"
  "-rw-r--r-- root/root /etc/condgate/condgate.ini"
  "-rw-r--r-- root/root /etc/condgate/rules.json"
  "-rw-r--r-- root/root /etc/condgate/blocklist.netset"
  "-rw-r--r-- root/root /lib/systemd/system/condgate.service"
  "-rw-r--r-- root/root /lib/systemd/system/condgate.socket"
  "-rw-r--r-- root/root /lib/systemd/system/condgate-admin.socket"
  "-rw-r--r-- root/root /usr/share/doc/condgate/copyright"
  "-rw-r--r-- root/root /usr/share/doc/condgate/changelog.Debian.gz"
)
want+=("-rw-r--r-- root/root /usr/share/man/man8/condgate.8.gz"
       "-rw-r--r-- root/root /usr/share/man/man5/condgate.ini.5.gz")
for f in condgate-grafana.json condgate-alerts.yml; do
  want+=("-rw-r--r-- root/root /usr/share/condgate/monitoring/$f")
done
for w in "${want[@]}"; do
  grep -qxF -- "$w" "$tmp/contents" || fail "the package lacks '$w'"
done
nfiles=$(grep -vc '^d' "$tmp/contents")
[ "$nfiles" = ${#want[@]} ] ||
  fail "the package holds $nfiles files, expected ${#want[@]}: $(grep -v '^d' "$tmp/contents")"
dpkg-deb -x "$deb" "$tmp/root"
file -b "$tmp/root/usr/sbin/condgate" | grep -q ", stripped" || fail "/usr/sbin/condgate is not stripped"
! readelf -S "$tmp/root/usr/sbin/condgate" | grep -q "\.comment" || fail "/usr/sbin/condgate has a .comment section"
grep -q "^state_file = /var/lib/condgate/" "$tmp/root/etc/condgate/condgate.ini" ||
  fail "the packaged condgate.ini keeps its state file outside /var/lib/condgate"
zcat "$tmp/root/usr/share/doc/condgate/changelog.Debian.gz" | head -1 | grep -qF "condgate (${version}-1) " ||
  fail "changelog.Debian.gz does not start with condgate (${version}-1)"
grep -q "^License: Expat" "$tmp/root/usr/share/doc/condgate/copyright" || fail "copyright has no License: Expat"
dpkg-deb -f "$deb" Section | grep -qx net || fail "Section is not net"
deps=$(dpkg-deb -f "$deb" Depends)
for d in adduser libc6 libuv1 libmicrohttpd12 libinih1 libcjson1; do
  [[ ", $deps," == *", $d"[\ ,]* ]] || fail "Depends lacks $d: $deps"
done
# A clean machine: every dependency comes from a Debian archive, not only
# from what this machine has installed.
for d in $(echo "$deps" | tr ',' '\n' | sed 's/(.*//; s/|.*//' | xargs); do
  [ -n "$(apt-cache madison "$d")" ] || fail "dependency $d is in no apt archive"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -t | sed 's#^\./##' | sort >"$tmp/control-files"
for c in conffiles postinst prerm postrm; do
  grep -qx "$c" "$tmp/control-files" || fail "control archive lacks $c"
done
ok "${#want[@]} files; stripped; Depends: $deps"

step "lintian (every level; reviewed suppressions in tests/package/lintian-suppressions)"
command -v lintian >/dev/null || fail "lintian is not installed"
lintian -I --pedantic -E --fail-on none "$deb" >"$tmp/lintian.out" 2>"$tmp/lintian.err" ||
  { cat "$tmp/lintian.err"; fail "lintian did not run"; }
grep -v '^N:' "$tmp/lintian.out" >"$tmp/lintian" || true
unexpected=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  # "W: condgate: TAG CONTEXT"
  rest=${line#*: condgate: }
  tag=${rest%% *}
  context=${rest#"$tag"}
  context=${context# }
  allowed=no
  while IFS='|' read -r stag scontext suntil sreason; do
    stag=$(echo "$stag" | xargs) scontext=$(echo "$scontext" | sed 's/^ //; s/ $//') suntil=$(echo "$suntil" | xargs)
    [ "$stag" = "$tag" ] || continue
    [ "$scontext" = "*" ] || [ "$scontext" = "$context" ] || continue
    [ "$suntil" = - ] || [ ! -e "$repo/$suntil" ] || continue
    allowed=yes
  done < <(grep -v '^#' "$here/lintian-suppressions" | grep -v '^[[:space:]]*$')
  if [ $allowed = yes ]; then
    echo "accepted: $line"
  else
    echo "NOT ACCEPTED: $line"
    unexpected=$((unexpected + 1))
  fi
done <"$tmp/lintian"
[ $unexpected = 0 ] || fail "$unexpected lintian finding(s) neither fixed nor in tests/package/lintian-suppressions"
ok "lintian"

step "apt-get install ./$(basename "$deb")"
apt-get install -y -q "$deb" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get install"; }
ok "installed $(dpkg-query -W -f '${Version}' condgate)"

step "installed files"
out=$(/usr/sbin/condgate -V)
[ "$(echo "$out" | head -1)" = "condgate $version" ] || fail "condgate -V: $out"
echo "$out" | grep -q "^features:.* systemd" || fail "condgate -V does not list systemd: the package must be built with libsystemd: $out"
ok "condgate -V: $(echo "$out" | tr '\n' ' ')"
/usr/sbin/condgate -t -c /etc/condgate/condgate.ini >"$tmp/t.out" 2>&1 ||
  { cat "$tmp/t.out"; fail "condgate -t on /etc/condgate/condgate.ini"; }
ok "condgate -t /etc/condgate/condgate.ini"
conffiles=$(dpkg-query -W -f '${Conffiles}\n' condgate)
for f in condgate.ini rules.json blocklist.netset; do
  echo "$conffiles" | grep -q "^ /etc/condgate/$f [0-9a-f]\{32\}$" || fail "/etc/condgate/$f is not a conffile: $conffiles"
done
ok "conffiles: $(echo "$conffiles" | awk '{print $1}' | tr '\n' ' ')"
id condgate >/dev/null 2>&1 || fail "postinst made no condgate account"
[ "$(stat -c '%U:%G %a' /var/lib/condgate)" = "condgate:condgate 750" ] ||
  fail "/var/lib/condgate is $(stat -c '%U:%G %a' /var/lib/condgate)"
ok "account $(id condgate); /var/lib/condgate condgate:condgate 750"
if enabled=$(ls -d /etc/systemd/system/*.wants/condgate* 2>/dev/null); then
  fail "the package enabled units: $enabled"
fi
for page in condgate.8 condgate.ini.5; do
  sec=${page##*.} name=${page%.*}
  path=$(man -w "$sec" "$name") || fail "man $sec $name: not found"
  [ "$path" = "/usr/share/man/man$sec/$page.gz" ] || fail "man $sec $name finds $path"
  err=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$path" 2>&1 >"$tmp/man.txt") || fail "man -l $path: $err"
  [ -z "$err" ] || fail "man -l $path warns: $err"
  grep -qi condgate "$tmp/man.txt" || fail "man -l $path rendered no text"
  MANWIDTH=80 man "$sec" "$name" >/dev/null 2>&1 || fail "man $sec $name"
done
ok "man condgate, man condgate.ini render without warnings"

step "systemd-analyze verify (the installed units, their man pages)"
out=$(systemd-analyze verify --man=yes /lib/systemd/system/condgate.service \
  /lib/systemd/system/condgate.socket /lib/systemd/system/condgate-admin.socket 2>&1) ||
  fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify is not clean: $out"
ok "systemd-analyze verify"

step "the installed gate, run as condgate.service would run it"
# No systemd as PID 1 here, so: its own network namespace (ports 7000 and
# 9090 free whatever else runs), a mount namespace where everything is
# read-only but the state and runtime directories (ProtectSystem=strict),
# private /tmp, no /home or /root, and setpriv for the unit's user, umask,
# capabilities (ambient) and no_new_privs; as-unit.sh does the rest.
unshare --net --mount --propagation private "$here/as-unit.sh"
if left=$(pgrep -u condgate -a); then
  fail "left running as condgate: $left"
fi

step "the installed units under systemd 252, booted in a container"
"$here/in-systemd.sh"

step "apt-get purge condgate"
apt-get purge -y -q condgate >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get purge"; }
left=$(ls -d /usr/sbin/condgate /etc/condgate /var/lib/condgate /run/condgate \
  /lib/systemd/system/condgate* /usr/share/doc/condgate /usr/share/condgate \
  /usr/share/man/man8/condgate.8.gz /usr/share/man/man5/condgate.ini.5.gz \
  /etc/systemd/system/*/condgate* /etc/systemd/system/condgate* \
  /var/lib/systemd/deb-systemd-helper-*/*condgate* 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
! dpkg-query -W condgate >/dev/null 2>&1 || fail "dpkg still knows condgate"
ok "nothing left"
echo "package check: passed"
