#!/usr/bin/env bash
# Starts or stops two Overlay hosts for tests/bench/compare.sh (which runs OpenVPN, tinc and wireguard-go at the same time: their
# devices are left out of ICE, or the link could choose a path through them): prosody in namespace A (on A's veth address) for
# signaling, one Overlay.Host per namespace with a TAP "ovl0", a link between them over the veth.
# usage: overlay-pair.sh start|stop NS_A NS_B VETH_IP_A VETH_IP_B OVERLAY_IP_A OVERLAY_IP_B WORKDIR
set -euo pipefail
cmd=$1 A=$2 B=$3 ipa=$4 ipb=$5 ova=$6 ovb=$7 work=$8/overlay
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
host_dll=$repo/samples/Overlay.Host/bin/Release/net10.0/Overlay.Host.dll

if [ "$cmd" = stop ]; then
  for f in "$work"/host-*.pid "$work"/prosody.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for _ in $(seq 50); do pgrep -f "$work" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f "$work" 2>/dev/null || true
  exit 0
fi

command -v prosody >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
dotnet build "$repo/samples/Overlay.Host" -c Release -v q -nologo >/dev/null

chmod o+x "$8"  # prosody runs as its own user and must reach its files
mkdir -p "$work/data/overlay%2etest/accounts"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=overlay.test -addext subjectAltName=DNS:overlay.test \
  -keyout "$work/overlay.test.key" -out "$work/overlay.test.crt" 2>/dev/null
cat > "$work/prosody.cfg.lua" <<CFG
pidfile = "$work/prosody.pid"
data_path = "$work/data"
daemonize = false
c2s_interfaces = { "$ipa" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = {}; s2s_ports = {}; http_ports = {}; https_ports = {}; component_ports = {}
log = { warn = "$work/prosody.log" }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "groups" }
modules_disabled = { "s2s" }
authentication = "internal_plain"
c2s_require_encryption = true
groups_file = "$work/groups.txt"
VirtualHost "overlay.test"
  ssl = { key = "$work/overlay.test.key"; certificate = "$work/overlay.test.crt" }
CFG
printf '[bench]\nnode1@overlay.test\nnode2@overlay.test\n' > "$work/groups.txt"
for u in node1 node2; do printf 'return {\n\t["password"] = "secret";\n};\n' > "$work/data/overlay%2etest/accounts/$u.dat"; done
chown -R prosody:prosody "$work"; chmod -R u+rwX,go+rX "$work"
ip netns exec "$A" runuser -u prosody -- prosody --config "$work/prosody.cfg.lua" >/dev/null 2>&1 &
for _ in $(seq 100); do ip netns exec "$A" ss -ltn | grep -q "$ipa:5222" && break; sleep 0.1; done

i=0
for side in "$A:$ova" "$B:$ovb"; do
  i=$((i + 1)); ns=${side%%:*}; ov=${side#*:}
  cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$ipa", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  "IgnoredNetInterfaces": [ "ovpn0", "tinc0", "wgcmp0" ],
  "Overlays": { "bench": { "NetDevice": { "Name": "ovl0", "IP4": "$ov", "PrefixLen": 24 } } } }
JSON
  ip netns exec "$ns" dotnet "$host_dll" run "$work/node$i.json" --control-socket "$work/node$i.sock" --log-level Warning >"$work/host-$i.log" 2>&1 &
  echo $! > "$work/host-$i.pid"
done
