#!/usr/bin/env bash
# Starts or stops two Overlay hosts for tests/bench/compare.sh (which runs OpenVPN, tinc and wireguard-go at the same time: their
# devices are left out of ICE, or the link could choose a path through them): prosody in namespace A (on A's veth address) for
# signaling, one Overlay.Host per namespace with a TAP "ovl0", a link between them over the veth.
# usage: overlay-pair.sh start|stop NS_A NS_B VETH_IP_A VETH_IP_B OVERLAY_IP_A OVERLAY_IP_B WORKDIR
#        OVERLAY_HOST_DLL=path/Overlay.Host.dll runs that build (another revision's, for before/after) instead of this tree's;
#        it may also be the executable of a Native AOT publish (see tests/bench/idle.sh).
#        EVENT_LOOPS=N gives each host N event loops (DataPath.EventLoops; default: one per core).
set -euo pipefail
cmd=$1 A=$2 B=$3 ipa=$4 ipb=$5 ova=$6 ovb=$7 work=$8/overlay
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
host_dll=${OVERLAY_HOST_DLL:-$repo/samples/Overlay.Host/bin/Release/net10.0/Overlay.Host.dll}
case $host_dll in *.dll) host=(dotnet "$host_dll") ;; *) host=("$host_dll") ;; esac

if [ "$cmd" = stop ]; then
  for f in "$work"/host-*.pid "$work"/prosody.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for _ in $(seq 50); do pgrep -f "$work" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f "$work" 2>/dev/null || true
  exit 0
fi

[ -n "${OVERLAY_HOST_DLL:-}" ] || dotnet build "$repo/samples/Overlay.Host" -c Release -v q -nologo >/dev/null
"$here/prosody.sh" "$work" "$A" "$ipa" 2

i=0
for side in "$A:$ova" "$B:$ovb"; do
  i=$((i + 1)); ns=${side%%:*}; ov=${side#*:}
  cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$ipa", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  "IgnoredNetInterfaces": [ "ovpn0", "tinc0", "wgcmp-a", "wgcmp-b" ],
  ${EVENT_LOOPS:+\"DataPath\": { \"EventLoops\": $EVENT_LOOPS \},}
  "Overlays": { "bench": { "NetDevice": { "Name": "ovl0", "IP4": "$ov", "PrefixLen": 24 } } } }
JSON
  ip netns exec "$ns" "${host[@]}" run "$work/node$i.json" --control-socket "$work/node$i.sock" --log-level Warning >"$work/host-$i.log" 2>&1 &
  echo $! > "$work/host-$i.pid"
done
