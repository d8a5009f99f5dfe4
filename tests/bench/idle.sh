#!/usr/bin/env bash
# What an idle Overlay.Host costs, with 1 and with 30 links (issue #14: <= 60 MB RSS and <= 1% of one core with 30).
# For each link count L: L+1 real hosts, each in its own network namespace on one bridge (public addresses, no NAT: the
# links' paths do not matter here), one real prosody; host 1 names the other L as static edges, so once they are up it
# holds L links. When host 1's status shows them all up and a few seconds have passed, it measures host 1 over
# IDLE_SECONDS (default 30): CPU (utime + stime from /proc/PID/stat), context switches, RSS, PSS, private dirty,
# threads, and where the resident memory is (anonymous, the host's own image, other files; the largest mappings).
# usage: sudo tests/bench/idle.sh [L ...]             (default: 1 30; installs prosody, iproute2, python3 when missing)
#        PUBLISH=aot (default: the host published Native AOT) or PUBLISH=r2r (framework-dependent, ReadyToRun, run by
#        `dotnet`, as scale.sh ran it before); HOST=PATH runs an already published host (its executable or .dll) instead;
#        HOST_ENV="DOTNET_X=1 ..." runs host 1 with those runtime settings (experiments); SMAPS=1 prints every mapping.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
links=("$@"); [ ${#links[@]} -gt 0 ] || links=(1 30)
idle=${IDLE_SECONDS:-30}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
. "$here/internet.sh"
need=(); for p in prosody iproute2 openssl python3 bc; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }

if [ -n "${HOST:-}" ]; then
  host_path=$HOST
else
  case ${PUBLISH:-aot} in
    aot) out=$repo/samples/Overlay.Host/bin/idle-aot; echo "publishing Overlay.Host Native AOT to $out (minutes)..."
         # the AOT compiler links with clang (Debian's clang-14 installs no plain 'clang') or else gcc
         cc=$(command -v clang || command -v clang-14 || command -v gcc || true)
         [ -n "$cc" ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang zlib1g-dev >/dev/null; cc=clang; }
         dotnet publish "$repo/samples/Overlay.Host" -c Release -r linux-x64 -p:PublishAot=true -p:CppCompilerAndLinker="$cc" \
           -o "$out" -v:q -nologo >/dev/null \
           || { echo "publish failed"; exit 1; }
         host_path=$out/Overlay.Host ;;
    r2r) out=$repo/samples/Overlay.Host/bin/idle-r2r; echo "publishing Overlay.Host framework-dependent, ReadyToRun, to $out..."
         dotnet publish "$repo/samples/Overlay.Host" -c Release -r linux-x64 --self-contained false -p:PublishAot=false \
           -p:PublishReadyToRun=true -o "$out" -v:q -nologo >/dev/null || { echo "publish failed"; exit 1; }
         host_path=$out/Overlay.Host.dll ;;
    *) echo "PUBLISH: aot or r2r"; exit 2 ;;
  esac
fi
case $host_path in *.dll) host=(dotnet "$host_path") ;; *) host=("$host_path") ;; esac
echo "host: ${host[*]}"
echo "date: $(date -u '+%F %H:%M') UTC, machine: $(nproc) cores, $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GB"

P=i14$((RANDOM % 1000)); work=""; pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  [ -n "$work" ] && [ -f "$work/prosody.pid" ] && kill -TERM "$(cat "$work/prosody.pid")" 2>/dev/null
  sleep 0.3
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  [ -n "$work" ] && rm -rf "$work"
  pids=(); work=""
}
trap cleanup EXIT

status_of() { # SOCKET: the host's status as JSON through its control socket
  python3 - "$1" <<'PY' 2>/dev/null || true
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1]); s.sendall(b"status --json\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
sys.stdout.write(data.decode())
PY
}
links_up() { status_of "$1" | python3 -c "import json,sys; print(sum(1 for l in json.load(sys.stdin)['Overlays'][0]['Status']['Links'] if l['State']=='Up'))" 2>/dev/null || echo 0; }

run_one() {
  local l=$1 n=$(($1 + 1)) srv=198.51.100.10 i
  work=$(mktemp -d /tmp/overlay-idle.XXXXXX); chmod 755 "$work"
  internet_up $srv
  "$here/prosody.sh" "$work" $P-srv $srv $n || exit 1
  local ids=() static=""
  for i in $(seq $n); do
    ip netns add $P-h$i; ip -n $P-h$i link set lo up; attach $P-h$i $P-p$i 198.51.100.$((100 + i))
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=node$i \
      -keyout "$work/k$i.pem" -out "$work/c$i.pem" 2>/dev/null
    cat "$work/c$i.pem" "$work/k$i.pem" > "$work/node$i.pem"; rm "$work/k$i.pem"
    ids[$i]=$(openssl x509 -in "$work/c$i.pem" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -c1-32)
    [ $i -gt 1 ] && static+="${static:+, }\"${ids[$i]}\""
  done
  chmod 600 "$work"/node*.pem
  for i in $(seq $n); do
    local extra; extra=$([ $i = 1 ] && echo ", \"StaticEdges\": [ $static ]" || true)
    cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$srv", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  "CertificateFile": "$work/node$i.pem",
  "Overlays": { "idle": { "NetDevice": { "Name": "ovl0", "IP4": "10.98.0.$i", "PrefixLen": 24 }$extra } } }
JSON
    chmod 600 "$work/node$i.json"
  done
  # the others first, in waves of 8 (a loaded small machine), then host 1
  for i in $(seq 2 $n); do
    if [ $i -gt 2 ] && [ $(( (i - 2) % 8 )) = 0 ]; then
      for k in $(seq $((i - 8)) $((i - 1))); do
        for _ in $(seq 600); do [ -S "$work/node$k.sock" ] && break; kill -0 ${pids[$k]} 2>/dev/null || break; sleep 0.1; done
      done
    fi
    ip netns exec $P-h$i env --default-signal=INT "${host[@]}" run "$work/node$i.json" --control-socket "$work/node$i.sock" \
      --log-level Warning </dev/null >"$work/host-$i.log" 2>&1 &
    pids[$i]=$!
  done
  ip netns exec $P-h1 env --default-signal=INT ${HOST_ENV:-} "${host[@]}" run "$work/node1.json" --control-socket "$work/node1.sock" \
    --log-level Warning </dev/null >"$work/host-1.log" 2>&1 &
  pids[1]=$!
  local t0=$SECONDS up=0
  while [ $((SECONDS - t0)) -lt 180 ]; do
    kill -0 ${pids[1]} 2>/dev/null || { echo "host 1 exited: $(tail -3 "$work/host-1.log")"; exit 1; }
    [ -S "$work/node1.sock" ] && up=$(links_up "$work/node1.sock")
    [ "$up" -ge $l ] && break
    sleep 1
  done
  echo
  echo "== $l link(s): host 1 had $up of $l links up $((SECONDS - t0)) s after its start"
  sleep 5   # setup's last messages and path MTU searches settle
  local pid=${pids[1]} clk; clk=$(getconf CLK_TCK)
  local b bs; b=$(awk '{print $14 + $15}' /proc/$pid/stat)
  bs=$(cat /proc/$pid/task/*/status | awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ {s += $2} END {print s}')
  local tb; tb=$(date +%s.%N); sleep $idle
  local e es te; e=$(awk '{print $14 + $15}' /proc/$pid/stat); te=$(date +%s.%N)
  es=$(cat /proc/$pid/task/*/status | awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ {s += $2} END {print s}')
  local span; span=$(echo "$te - $tb" | bc -l)
  up=$(links_up "$work/node1.sock")
  echo "   idle over $(printf '%.0f' "$span") s (load average $(cut -d' ' -f1-3 /proc/loadavg)), $up links up at its end:"
  echo "   CPU $(echo "100 * ($e - $b) / $clk / $span" | bc -l | xargs printf '%.2f')% of one core (target <= 1% with 30 links)," \
    "$(echo "($es - $bs) / $span" | bc -l | xargs printf '%.0f') context switches a second, $(awk '/Threads/ {print $2}' /proc/$pid/status) threads"
  awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Private_Dirty:/ {d = $2} END {printf "   RSS %.1f MB (target <= 60 MB), PSS %.1f MB, private dirty %.1f MB\n", r / 1024, p / 1024, d / 1024}' /proc/$pid/smaps_rollup
  # where the resident memory is, by mapping (smaps: a header line per mapping, then its fields)
  python3 - /proc/$pid/smaps "$(readlink -f /proc/$pid/exe)" "${SMAPS:-}" <<'PY'
import sys, collections
smaps, exe, every = sys.argv[1], sys.argv[2], sys.argv[3]
maps, cur = [], None
for line in open(smaps):
    f = line.split()
    if "-" in f[0] and not f[0].endswith(":"):
        cur = {"name": f[5] if len(f) > 5 else "[anon]", "perm": f[1], "size": int(f[0].split("-")[1], 16) - int(f[0].split("-")[0], 16)}
        maps.append(cur)
    elif f[0] in ("Rss:", "Private_Dirty:", "Anonymous:"):
        cur[f[0][:-1]] = int(f[1])
kinds = collections.Counter()
for m in maps:
    n = m["name"]
    k = ("the host's image" if n == exe else "anonymous (GC heap, native buffers, JIT, stacks)" if n == "[anon]" or n.startswith("[anon:")
         else n if n.startswith("[") else "memfd (the JIT's double-mapped code)" if n.startswith("/memfd:") or "doublemapper" in n
         else "runtime libraries (" + n.rsplit("/", 1)[-1] + ")" if "/dotnet/shared/" in n and n.endswith(".so")
         else "assemblies (.dll)" if n.endswith(".dll") else "other files")
    kinds[k] += m.get("Rss", 0)
print("   resident by kind: " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in kinds.most_common() if v >= 512))
big = sorted(maps, key=lambda m: -m.get("Rss", 0))
print("   largest mappings (RSS MB): " + ", ".join(f"{m['name'].rsplit('/', 1)[-1]} {m['perm']} {m.get('Rss', 0) / 1024:.1f}" for m in big[:6]))
if every:
    for m in big:
        if m.get("Rss", 0): print(f"     {m.get('Rss', 0):8d} kB  {m['perm']}  size {m['size'] // 1024:8d} kB  {m['name']}")
PY
  if grep -q -i -E "unhandled|fatal" "$work"/host-*.log; then echo "   a host logged:"; grep -h -i -E "unhandled|fatal" "$work"/host-*.log | head -3; fi
  cleanup
}

for l in "${links[@]}"; do run_one "$l"; done
