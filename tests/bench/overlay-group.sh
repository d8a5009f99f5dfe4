#!/usr/bin/env bash
# Starts or stops a group of Overlay hosts for tests/bench/compare.sh's forwarding and two-peer rows: prosody in the
# server's namespace (on the given address) for signaling, one Overlay.Host per namespace with a TAP "ovl0", all in
# overlay "group". (overlay-pair.sh does the same for the Overlay row's two hosts.)
# usage: overlay-group.sh start WORKDIR SERVER_NS SERVER_IP NS:OVERLAY_IP...
#        overlay-group.sh stop WORKDIR
set -euo pipefail
cmd=$1 work=$2/group
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
host_dll=$repo/samples/Overlay.Host/bin/Release/net10.0/Overlay.Host.dll

if [ "$cmd" = stop ]; then
  for f in "$work"/host-*.pid "$work"/prosody.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for f in "$work"/host-*.pid; do for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done; done
  exit 0
fi
srv_ns=$3 srv_ip=$4; shift 4
command -v prosody >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null; }
dotnet build "$repo/samples/Overlay.Host" -c Release -v q -nologo >/dev/null

chmod o+x "$2"  # prosody runs as its own user and must reach its files
mkdir -p "$work/data/overlay%2etest/accounts"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=overlay.test -addext subjectAltName=DNS:overlay.test \
  -keyout "$work/overlay.test.key" -out "$work/overlay.test.crt" 2>/dev/null
cat > "$work/prosody.cfg.lua" <<CFG
pidfile = "$work/prosody.pid"
data_path = "$work/data"
daemonize = false
c2s_interfaces = { "$srv_ip" }
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
{ echo "[group]"; for i in $(seq $#); do echo "node$i@overlay.test"; done; } > "$work/groups.txt"
for i in $(seq $#); do printf 'return {\n\t["password"] = "secret";\n};\n' > "$work/data/overlay%2etest/accounts/node$i.dat"; done
chown -R prosody:prosody "$work"; chmod -R u+rwX,go+rX "$work"
ip netns exec "$srv_ns" runuser -u prosody -- prosody --config "$work/prosody.cfg.lua" </dev/null >/dev/null 2>&1 &
for _ in $(seq 300); do ip netns exec "$srv_ns" ss -ltn | grep -q "$srv_ip:5222" && break; sleep 0.1; done

i=0
for side in "$@"; do
  i=$((i + 1)); ns=${side%%:*}; ov=${side#*:}
  cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$srv_ip", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  "Overlays": { "group": { "NetDevice": { "Name": "ovl0", "IP4": "$ov", "PrefixLen": 24 } } } }
JSON
  chmod 600 "$work/node$i.json"
  ip netns exec "$ns" dotnet "$host_dll" run "$work/node$i.json" --control-socket "$work/node$i.sock" --log-level Warning \
    </dev/null >"$work/host-$i.log" 2>&1 &
  echo $! > "$work/host-$i.pid"
done
