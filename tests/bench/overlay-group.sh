#!/usr/bin/env bash
# Starts or stops a group of Overlay hosts for tests/bench/compare.sh's forwarding and two-peer rows: prosody in the
# server's namespace (on the given address) for signaling, one Overlay.Host per namespace with a TAP "ovl0", all in
# overlay "group". (overlay-pair.sh does the same for the Overlay row's two hosts.)
# usage: overlay-group.sh start WORKDIR SERVER_NS SERVER_IP NS:OVERLAY_IP...
#        overlay-group.sh stop WORKDIR
#        EVENT_LOOPS=N gives each host N event loops (DataPath.EventLoops; default: one per core).
#        OVERLAY_HOST_DLL=path runs that build (a .dll, or a Native AOT executable) instead of this tree's.
set -euo pipefail
cmd=$1 work=$2/group
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
host_dll=${OVERLAY_HOST_DLL:-$repo/samples/Overlay.Host/bin/Release/net10.0/Overlay.Host.dll}
case $host_dll in *.dll) host=(dotnet "$host_dll") ;; *) host=("$host_dll") ;; esac

if [ "$cmd" = stop ]; then
  for f in "$work"/host-*.pid "$work"/prosody.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for f in "$work"/host-*.pid; do for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done; done
  exit 0
fi
srv_ns=$3 srv_ip=$4; shift 4
[ -n "${OVERLAY_HOST_DLL:-}" ] || dotnet build "$repo/samples/Overlay.Host" -c Release -v q -nologo >/dev/null
mkdir -p "$work"
"$here/prosody.sh" "$work" "$srv_ns" "$srv_ip" $#

i=0
for side in "$@"; do
  i=$((i + 1)); ns=${side%%:*}; ov=${side#*:}
  cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$srv_ip", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  ${EVENT_LOOPS:+\"DataPath\": { \"EventLoops\": $EVENT_LOOPS \},}
  "Overlays": { "group": { "NetDevice": { "Name": "ovl0", "IP4": "$ov", "PrefixLen": 24 } } } }
JSON
  chmod 600 "$work/node$i.json"
  ip netns exec "$ns" "${host[@]}" run "$work/node$i.json" --control-socket "$work/node$i.sock" --log-level Warning \
    </dev/null >"$work/host-$i.log" 2>&1 &
  echo $! > "$work/host-$i.pid"
done
