#!/usr/bin/env bash
# Starts prosody for the benchmark scripts (overlay-pair.sh, overlay-group.sh, scale.sh): domain overlay.test with a
# self-signed certificate (WORKDIR/overlay.test.crt, for the hosts' CaFile), STARTTLS required, accounts node1..nodeN
# with password "secret" in one shared roster group, listening on ADDRESS:5222 inside namespace NS. Returns once it
# accepts connections (at most 30 s); prosody's own output is in WORKDIR/prosody.out, its PID in WORKDIR/prosody.pid.
# usage: prosody.sh WORKDIR NS ADDRESS ACCOUNTS
set -euo pipefail
work=$1 ns=$2 address=$3 accounts=$4
command -v prosody >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
mkdir -p "$work/data/overlay%2etest/accounts"
chmod o+x "$(dirname "$work")" "$work"  # prosody runs as its own user and must reach its files
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=overlay.test -addext subjectAltName=DNS:overlay.test \
  -keyout "$work/overlay.test.key" -out "$work/overlay.test.crt" 2>/dev/null
cat > "$work/prosody.cfg.lua" <<CFG
pidfile = "$work/prosody.pid"
data_path = "$work/data"
daemonize = false
c2s_interfaces = { "$address" }
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
{ echo "[bench]"; for i in $(seq "$accounts"); do echo "node$i@overlay.test"; done; } > "$work/groups.txt"
for i in $(seq "$accounts"); do printf 'return {\n\t["password"] = "secret";\n};\n' > "$work/data/overlay%2etest/accounts/node$i.dat"; done
chown -R prosody:prosody "$work/data" "$work/overlay.test.key" "$work/overlay.test.crt" "$work/prosody.cfg.lua" "$work/groups.txt"
chmod -R u+rwX,go+rX "$work/data" "$work/overlay.test.crt" "$work/groups.txt" "$work/prosody.cfg.lua"
chown prosody:prosody "$work"
ip netns exec "$ns" runuser -u prosody -- prosody --config "$work/prosody.cfg.lua" </dev/null >"$work/prosody.out" 2>&1 &
for _ in $(seq 300); do ip netns exec "$ns" ss -ltn | grep -q "$address:5222" && exit 0; sleep 0.1; done
echo "prosody did not start:"; cat "$work/prosody.out"; exit 1
