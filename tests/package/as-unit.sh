#!/usr/bin/env bash
# Part of tests/package/check.sh, which runs it as root in a new network and
# mount namespace (unshare --net --mount) with the package installed: the
# installed gate run the way condgate.service runs it, as far as that goes
# without systemd as PID 1.
#   - ProtectSystem=strict: every mount read-only but StateDirectory
#     (/var/lib/condgate) and RuntimeDirectory (/run/condgate); PrivateTmp,
#     ProtectHome as empty tmpfs.
#   - User=/Group=condgate, UMask=0027, LimitNOFILE=1048576,
#     AmbientCapabilities= and CapabilityBoundingSet= as in the unit,
#     NoNewPrivileges=yes: setpriv.
# Then: ExecStartPre's `condgate -t`, the start, /healthz, the echo listener,
# the kernel prefilter loaded without root, a ban written to the state file,
# SIGHUP, SIGTERM (exit 0), and the ban read back by the next start.
set -euo pipefail

fail() { printf 'as-unit.sh: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }

unit=/lib/systemd/system/condgate.service
log=/run/condgate/check.log
pid=

stop_gate() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap stop_gate EXIT

ip link set lo up

# The unit's capabilities, as setpriv spells them.
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit")
[ "$caps" = "$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")" ] ||
  fail "$unit: AmbientCapabilities= and CapabilityBoundingSet= differ"
setcaps=-all
for c in $caps; do
  c=${c#CAP_}
  setcaps+=",+${c,,}"
done

# StateDirectory= exists (postinst); RuntimeDirectory= is made here as
# systemd makes it: owned by the user, RuntimeDirectoryMode=0750.
install -d -o condgate -g condgate -m 0750 /run/condgate
mount --bind /var/lib/condgate /var/lib/condgate
mount --bind /run/condgate /run/condgate
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
for d in /home /root; do
  [ -d "$d" ] && mount -t tmpfs -o ro,mode=0755 tmpfs "$d"
done
# Per-mount read-only flags (remount,bind): the file systems themselves are
# left alone outside this namespace.
findmnt -rn -o TARGET,OPTIONS | while read -r target opts; do
  case $target in
  /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /tmp | /var/tmp | /home | /root) continue ;;
  /var/lib/condgate | /run/condgate) continue ;;
  esac
  case ",$opts," in *,ro,*) continue ;; esac
  mount -o remount,bind,ro "$target"
done
if touch /etc/condgate/.probe 2>/dev/null; then
  rm -f /etc/condgate/.probe
  fail "/etc is writable in the unit's namespace"
fi

# LimitNOFILE=: raising the hard limit takes CAP_SYS_RESOURCE, which a
# sandbox may lack; then the hard limit there is what condgate gets.
nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
if ! (ulimit -n "$nofile") 2>/dev/null; then
  echo "note: LimitNOFILE=$nofile cannot be had here (no CAP_SYS_RESOURCE); using $(ulimit -Hn)"
  nofile=$(ulimit -Hn)
fi

# Becomes the command (exec): call it only in a subshell, $(...) or with &,
# so that the pid of `as_unit ... &` is the gate's.
as_unit() {
  ulimit -n "$nofile"
  umask 0027
  exec setpriv --reuid=condgate --regid=condgate --init-groups \
    --inh-caps="$setcaps" --ambient-caps="$setcaps" --bounding-set="$setcaps" \
    --no-new-privs -- "$@"
}

# ExecStartPre=, as the unit has it, then -t's summary.
pre=$(sed -n 's/^ExecStartPre=//p' "$unit")
[ -n "$pre" ] || fail "$unit has no ExecStartPre="
out=$(eval "as_unit $pre" 2>&1) || fail "ExecStartPre failed: $out"
[ -z "$out" ] || fail "ExecStartPre is not quiet: $out"
out=$(as_unit /usr/sbin/condgate -t -c /etc/condgate/condgate.ini 2>&1) || fail "condgate -t: $out"
echo "$out" | grep -q "^prefilter echo mode=refuse$" ||
  fail "the unit's capabilities do not load the kernel prefilter: $(echo "$out" | grep ^prefilter)"
ok "ExecStartPre quiet; condgate -t as condgate: prefilter echo mode=refuse"

start_gate() {
  start=$(sed -n 's/^ExecStart=//p' "$unit")
  as_unit $start >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if [ "$(curl -s --max-time 1 http://127.0.0.1:9090/healthz || true)" = ok ]; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "condgate exited at start"; }
    sleep 0.1
  done
  cat "$log"
  fail "no /healthz answer within 10 s"
}

: >"$log"
start_gate
uid=$(id -u condgate)
grep -q "^Uid:[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid$" "/proc/$pid/status" ||
  fail "condgate does not run as condgate: $(grep ^Uid "/proc/$pid/status")"
grep -q "^NoNewPrivs:[[:space:]]*1$" "/proc/$pid/status" || fail "no_new_privs is not set"
# CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_PERFMON 38, CAP_BPF 39
grep -q "^CapEff:[[:space:]]*000000c000001400$" "/proc/$pid/status" ||
  fail "effective capabilities: $(grep ^CapEff "/proc/$pid/status")"
ok "/healthz ok; pid $pid runs as condgate with CapEff 000000c000001400, no_new_privs"

exec 3<>/dev/tcp/127.0.0.1/7000
printf 'hello\n' >&3
read -r -t 5 reply <&3 || true
exec 3<&-
[ "$reply" = hello ] || fail "echo listener answered '$reply'"
ok "echo listener on 127.0.0.1:7000"

code=$(curl -s -o "/run/condgate/ban.json" -w '%{http_code}' -X POST http://127.0.0.1:9090/bans \
  -d '{"cidr": "127.0.0.5/32", "ttl_s": 600, "reason": "package check"}')
[ "$code" = 201 ] || fail "POST /bans: $code $(cat /run/condgate/ban.json)"
state=/var/lib/condgate/condgate.state.json
[ "$(stat -c '%U:%G %a' "$state" 2>&1)" = "condgate:condgate 640" ] ||
  fail "state file: $(stat -c '%U:%G %a' "$state" 2>&1)"
rc=0
curl -s --max-time 3 --interface 127.0.0.5 http://127.0.0.1:7000/ >/dev/null || rc=$?
[ $rc = 7 ] || fail "a banned caller was not refused before the handshake (curl exit $rc)"
refused=$(curl -s http://127.0.0.1:9090/stats | python3 -c '
import json, sys
for l in json.load(sys.stdin)["listeners"]:
    if l["name"] == "echo":
        print(l["prefilter"]["mode"], l["prefilter"]["refused"])')
case $refused in refuse\ [1-9]*) ;; *) fail "/stats: echo listener prefilter: $refused" ;; esac
ok "ban 127.0.0.5 in $state (condgate:condgate 640); refused in the kernel ($refused)"

kill -HUP "$pid"
for _ in $(seq 50); do
  grep -q "event=reload result=ok" "$log" && break
  sleep 0.1
done
grep -q "event=reload result=ok" "$log" || { cat "$log"; fail "SIGHUP: no reload"; }
ok "SIGHUP reloads"

kill -TERM "$pid"
rc=0
timeout 10 tail --pid="$pid" -f /dev/null || fail "SIGTERM: still running after 10 s"
wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || { cat "$log"; fail "SIGTERM: exit status $rc"; }
ok "SIGTERM: exit 0"

start_gate
grep -q "event=bans_loaded file=$state bans=1 " "$log" ||
  { cat "$log"; fail "the restart did not read the ban back from $state"; }
stop_gate
pid=
ok "the next start reads the ban back"
