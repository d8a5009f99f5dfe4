#!/usr/bin/env bash
# Real scale on one machine: N Overlay.Host processes (default 32), each in its own network namespace with a real TAP,
# a quarter on public addresses, half behind cone NATs and a quarter behind symmetric NATs (iptables MASQUERADE, as
# the NAT lab of tests/Overlay.TestSupport builds them), one real prosody and one coturn. Measures, and prints each
# figure with PASS/FAIL against its target:
#   1. from the hosts' start until every ordered pair has pinged (kernel ping through the TAPs, fping rounds), <= 20 s;
#      and whether the ring is formed then (every node linked to its ring successor, from each host's status);
#   2. idle: the whole set's CPU (utime + stime from /proc/<pid>/stat over 30 s, summed), < 50% of one core; each
#      host's RSS; host 1, which names 30 others as static edges, is the idle node "with 30 links" (<= 60 MB, <= 1%);
#   3. KILL hosts (default 8, spread over the kinds) killed at once with SIGKILL; from then until every ordered pair of
#      the rest pings again, <= 5 s.
# With N=2 it is the idle node "with 1 link": sudo tests/bench/scale.sh 2.
# usage: sudo tests/bench/scale.sh [nodes] [killed]      (installs prosody, coturn, fping when missing)
#        IDLE_SECONDS=30 sets the idle window; LIMIT=60 how long to wait for all pairs; KEEP=DIR keeps the hosts' logs and status; EVENT_LOOPS=N sets each host's event loops; HOST=PATH runs an already
#        published host (.dll or AOT executable); HOST_ENV="DOTNET_X=1 ..." runs every host with those runtime settings (experiments); HOLD=1 keeps everything up at the end until its file goes.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
n=${1:-32}; nkill=${2:-8}; idle=${IDLE_SECONDS:-30}; limit=${LIMIT:-60}
[ "$n" -ge 2 ] && [ "$n" -le 60 ] || { echo "nodes: 2..60"; exit 2; }
[ "$nkill" -le $((n - 2)) ] || nkill=0
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
. "$here/internet.sh"
need=(); for p in prosody coturn fping iproute2 iptables openssl python3; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }

# The published host: framework-dependent, ReadyToRun where the SDK can, so 32 processes starting at once on a small
# machine spend their time on the overlay rather than on the JIT; or HOST=PATH, a host already published (its .dll, or
# the executable of a Native AOT publish, which starts with no JIT at all: see tests/bench/idle.sh).
work=$(mktemp -d /tmp/overlay-scale.XXXXXX); chmod 755 "$work"
if [ -n "${HOST:-}" ]; then
  host_path=$HOST
else
  out=$repo/samples/Overlay.Host/bin/scale
  echo "publishing Overlay.Host to $out..."
  dotnet publish "$repo/samples/Overlay.Host" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
    -o "$out" -v:q -nologo >/dev/null || { echo "publish failed"; exit 1; }
  host_path=$out/Overlay.Host.dll
fi
case $host_path in *.dll) host=(dotnet "$host_path") ;; *) host=("$host_path") ;; esac
echo "host: ${host[*]}"

P=s14$((RANDOM % 1000)); pids=(); kinds=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; done
  for f in "$work"/prosody.pid "$work"/turn.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.3
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  neigh_restore
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$work"/*.log "$work"/*.status.json "$work"/ping-* "$KEEP"/ 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Times without a fork per reading: $EPOCHREALTIME has six decimals
now() { echo $EPOCHREALTIME; }
since_us() { local a=${EPOCHREALTIME/./} b=${1/./}; echo $(( 10#$a - 10#$b )); }
since() { local d; d=$(since_us $1); printf '%d.%d' $((d / 1000000)) $(( d % 1000000 / 100000 )); }

# --- the internet: a bridge, the server (prosody, coturn), hosts on it or behind NAT routers ---
srv=198.51.100.10
neigh_room $((n * n + 4 * n))   # every host's TAP resolves every other host's overlay address, in one kernel table
internet_up $srv
for i in $(seq $n); do
  ns=$P-h$i; ip netns add $ns; ip -n $ns link set lo up
  case $((i % 4)) in 1) kind=public ;; 0) kind=symmetric ;; *) kind=cone ;; esac
  [ $n -le 4 ] && kind=public
  kinds[$i]=$kind
  if [ $kind = public ]; then attach $ns $P-p$i 198.51.100.$((100 + i)); continue; fi
  r=$P-r$i; ip netns add $r; ip -n $r link set lo up
  attach $r $P-w$i 198.51.100.$((160 + i))
  ip link add $P-l$i type veth peer name $P-m$i
  ip link set $P-l$i netns $r; ip link set $P-m$i netns $ns
  ip -n $r addr add 10.$i.0.1/24 dev $P-l$i; ip -n $r link set $P-l$i up
  ip -n $ns addr add 10.$i.0.2/24 dev $P-m$i; ip -n $ns link set $P-m$i up
  ip -n $ns route add default via 10.$i.0.1
  ip netns exec $r sysctl -qw net.ipv4.ip_forward=1
  random=$([ $kind = symmetric ] && echo --random-fully || true)
  ip netns exec $r iptables -t nat -A POSTROUTING -o $P-w$i -j MASQUERADE $random
  ip netns exec $r iptables -A FORWARD -i $P-w$i -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ip netns exec $r iptables -A FORWARD -i $P-w$i -j DROP
  ip netns exec $r iptables -A INPUT -i $P-w$i -p udp -j DROP   # see NatLab: keeps a cone NAT's port under simultaneous open
done

# --- coturn and prosody in the server's namespace ---
ip netns exec $P-srv turnserver -n --listening-ip=$srv --listening-port=3478 --relay-ip=$srv --external-ip=$srv \
  --realm=overlay.test --user=node:secret --lt-cred-mech --fingerprint --no-tls --no-dtls --no-cli --no-rfc5780 \
  --no-software-attribute --log-file="$work/turn.log" --simple-log --pidfile="$work/turn.pid" >/dev/null 2>&1 &
"$here/prosody.sh" "$work" $P-srv $srv $n || exit 1
for _ in $(seq 300); do ip netns exec $P-srv ss -lun | grep -q "$srv:3478" && break; sleep 0.1; done

# --- node keys (the node ID is the first 32 hex digits of SHA-256 over the key's SubjectPublicKeyInfo) and configurations ---
ids=()
for i in $(seq $n); do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=node$i \
    -keyout "$work/k$i.pem" -out "$work/c$i.pem" 2>/dev/null
  cat "$work/c$i.pem" "$work/k$i.pem" > "$work/node$i.pem"; rm "$work/k$i.pem"
  ids[$i]=$(openssl x509 -in "$work/c$i.pem" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -c1-32)
done
chmod 600 "$work"/node*.pem
static=""; for i in $(seq 3 $n); do [ $i -le 31 ] && static+="${static:+, }\"${ids[$i]}\""; done
loops=""; [ -z "${EVENT_LOOPS:-}" ] || loops=" \"DataPath\": { \"EventLoops\": $EVENT_LOOPS },"
for i in $(seq $n); do
  extra=$([ $i = 1 ] && echo ", \"StaticEdges\": [ $static ]" || true)
  cat > "$work/node$i.json" <<JSON
{ "Signal": { "HostAddress": "$srv", "Port": 5222, "Username": "node$i@overlay.test", "Password": "secret", "CaFile": "$work/overlay.test.crt" },
  "Stun": [ "$srv:3478" ], "Turn": [ { "Address": "$srv:3478", "User": "node", "Password": "secret" } ],
  "CertificateFile": "$work/node$i.pem",$loops
  "Overlays": { "scale": { "NetDevice": { "Name": "ovl0", "IP4": "10.99.0.$i", "PrefixLen": 24 }$extra } } }
JSON
  chmod 600 "$work/node$i.json"
done

# --- start every host at once ---
echo "date: $(date -u '+%F %H:%M') UTC, machine: $(nproc) cores, $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GB; $n hosts" \
  "($(printf '%s\n' "${kinds[@]}" | sort | uniq -c | awk '{printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2}'))"
echo "load average before start: $(cut -d' ' -f1-3 /proc/loadavg)"
# In waves of WAVE (default 8), each once the previous wave's hosts have opened their control sockets: 32 processes
# starting at once on a loaded small machine can take longer than the 15 s a host gives its first signaling connection.
wave=${WAVE:-8}
t0=$(now)
for i in $(seq $n); do
  if [ $i -gt 1 ] && [ $(( (i - 1) % wave )) = 0 ]; then
    for k in $(seq $((i - wave)) $((i - 1))); do
      for _ in $(seq 600); do [ -S "$work/node$k.sock" ] && break; kill -0 ${pids[$k]} 2>/dev/null || break; sleep 0.1; done
    done
  fi
  ip netns exec $P-h$i env --default-signal=INT ${HOST_ENV:-} "${host[@]}" run "$work/node$i.json" --control-socket "$work/node$i.sock" \
    --log-level Warning </dev/null >"$work/host-$i.log" 2>&1 &
  pids[$i]=$!
done
tlast=$(now)

clk=$(getconf CLK_TCK)
ticks() { local s=0 t; for i in "$@"; do t=$(awk '{print $14 + $15}' /proc/${pids[$i]}/stat 2>/dev/null); s=$((s + ${t:-0})); done; echo $s; }
alive() { local a=(); for i in $(seq $n); do [ -n "${pids[$i]}" ] && a+=($i); done; echo "${a[@]}"; }
# all_pairs LIMIT START LABEL: from every live host one fping to every other live host, each every 500 ms for as long
# as it takes (-l), every reply printed with fping's own time of receipt (-D) into $work/ping-LABEL-<host>; prints the
# seconds from START (an $EPOCHREALTIME) until every ordered pair has answered once, by those times, or after LIMIT
# seconds what is still missing. The replies' own times make the figure independent of how soon this script, starved
# by the starting hosts on a small machine, gets to look. (The earlier rounds, one fping per host with -t 300 and no
# retry, counted as lost every echo that took over 300 ms; at 8 hosts under a load of 15-27 one fping of 7 pings took
# 5-8 s and a round with its forks 10-20 s, and two whole rounds after the ring was up saw no reply at all.)
all_pairs() {
  local limit=$1 start=$2 label=$3 live fp=() i j; live=($(alive))
  for i in "${live[@]}"; do
    ip netns exec $P-h$i fping -D -l -p 500 -t 2000 $(for j in "${live[@]}"; do [ $i != $j ] && echo 10.99.0.$j; done) \
      > "$work/ping-$label-$i" 2>/dev/null &
    fp+=($!)
  done
  local want=$(( ${#live[@]} * (${#live[@]} - 1) )) result
  while :; do
    sleep 0.5
    # one awk over every host's replies: the first reply per ordered pair at or after START
    result=$(cd "$work" && awk -v start="$start" -v want=$want '
      /^\[.* bytes/ { ts = substr($1, 2, length($1) - 2) + 0; if (ts < start) next
               k = FILENAME " " $2; if (!(k in first)) { first[k] = ts; n++; if (ts > last) last = ts } }
      END { if (n >= want) printf "%.1f", last - start; else printf "left %d", want - n }' $(for i in "${live[@]}"; do echo ping-$label-$i; done))
    [[ $result != left* ]] && break
    (( $(since_us $start) > limit * 1000000 )) && break
  done
  kill -INT "${fp[@]}" 2>/dev/null; wait "${fp[@]}" 2>/dev/null
  if [[ $result != left* ]]; then echo "$result"; return 0; fi
  echo "timeout: ${result#left } of $want ordered pairs unanswered after $limit s"
  return 1
}

# ring_check: every live host linked to its ring successor (by node ID order), from each host's status; prints links per host
ring_check() {
  local live; live=($(alive))
  for i in "${live[@]}"; do
    python3 - "$work/node$i.sock" > "$work/node$i.status.json" 2>/dev/null <<'PY' || true
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1]); s.sendall(b"status --json\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
sys.stdout.write(data.decode())
PY
  done
  python3 - "$work" "${live[@]}" <<'PY'
import json, sys
work, live = sys.argv[1], sys.argv[2:]
up, me = {}, {}
for i in live:
    try: st = json.load(open(f"{work}/node{i}.status.json"))
    except Exception as e: print(f"host {i}: no status ({e})"); sys.exit(1)
    ov = st["Overlays"][0]
    me[i] = node = st["NodeId"]
    up[node] = {l["PeerNodeId"] for l in ov["Status"]["Links"] if l["State"] == "Up"}
ring = sorted(up)
missing = [(a, ring[(k + 1) % len(ring)]) for k, a in enumerate(ring)
           if ring[(k + 1) % len(ring)] not in up[a] or a not in up[ring[(k + 1) % len(ring)]]]
counts = [len(up[me[i]]) for i in live]
print(f"links up per host: min {min(counts)}, max {max(counts)}, mean {sum(counts)/len(counts):.1f}; host 1: {len(up[me[live[0]]])}")
print("ring: formed" if not missing else f"ring: {len(missing)} successor links missing")
sys.exit(1 if missing else 0)
PY
}
# start_report START LABEL: what the time until all pairs pinged was made of, from each host's status (its node up,
# signaling logged in; each link's Since) and the ping files (each pair's first reply), in seconds after START
start_report() {
  python3 - "$work" "$1" "$2" $(alive) <<'PY'
import datetime, glob, json, sys
work, start, label, live = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
def at(text): return datetime.datetime.fromisoformat(text).timestamp() - start
def spread(xs):
    xs = sorted(xs)
    return f"median {xs[len(xs) // 2]:.1f}, 90% {xs[min(len(xs) - 1, int(len(xs) * 0.9))]:.1f}, last {xs[-1]:.1f}" if xs else "none"
up, ring, first = [], [], []
for i in live:
    try: st = json.load(open(f"{work}/node{i}.status.json"))
    except Exception: continue
    up.append(at(st["Started"]))
    links = [l for l in st["Overlays"][0]["Status"]["Links"] if l["State"] == "Up"]
    succ = [at(l["Since"]) for l in links if "Successor" in l["Roles"]]
    if succ: ring.append(max(succ))
for i in live:
    seen = {}
    for line in open(f"{work}/ping-{label}-{i}", errors="replace"):
        if not line.startswith("[") or " bytes" not in line: continue
        ts = float(line[1:line.index("]")]) - start
        addr = line.split()[1]
        if ts >= 0 and addr not in seen: seen[addr] = ts
    first += seen.values()
print(f"   each host's node up (runtime start, signaling login): {spread(up)} s after the start")
print(f"   each host's links to its ring successors up: {spread(ring)} s (those still up at the status query)")
print(f"   each ordered pair's first reply: {spread(first)} s")
PY
}
verdict() { [ "$(echo "$1" | bc -l)" = 1 ] && echo PASS || echo FAIL; }

# reap: hosts that exited are reported (their last line) and left out from here on
reap() {
  for i in $(seq $n); do
    # an exited host not yet waited for is a zombie, which kill -0 still finds
    [ -n "${pids[$i]}" ] && [ "$(awk '{print $3}' /proc/${pids[$i]}/stat 2>/dev/null || echo gone)" = Z -o ! -e /proc/${pids[$i]}/stat ] && { echo "host $i exited: $(tail -1 "$work/host-$i.log")"; pids[$i]=""; }
  done
  [ -n "$(alive)" ] || { echo "no host is running"; exit 1; }
}
echo
pairs=$(all_pairs $limit $t0 start) && ok=1 || ok=0
reap
if [ $ok = 1 ]; then
  echo "1. every ordered pair of $n pinged $pairs s after the first host's start (target <= 20 s): $(verdict "$pairs <= 20")"
  echo "   (the last host was started $(echo "$tlast - $t0" | bc -l | xargs printf '%.1f') s after the first)"
else
  echo "1. all pairs after start: $pairs (target <= 20 s): FAIL"
fi
ring_check && ring=PASS || ring=FAIL
echo "   ring formed then: $ring"
start_report $t0 start
echo "   CPU used by the hosts from their start until then: $(echo "$(ticks $(alive)) / $(getconf CLK_TCK)" | bc -l | xargs printf '%.1f') s together (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# --- idle ---
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/${pids[$1]}/status; }
# PSS: shared pages (the runtime's and the assemblies' files, mapped by every host) divided among the processes mapping them
pss() { awk '/^Pss:/ {p = $2} /^Private_Dirty:/ {d = $2} END {printf "PSS %.1f MB, private dirty %.1f MB", p / 1024, d / 1024}' /proc/${pids[$1]}/smaps_rollup; }
sleep 5   # the last pings' ARP and the status queries settle
reap; live=($(alive))
b=$(ticks "${live[@]}"); b1=$(ticks 1); tb=$(now); sleep $idle; e=$(ticks "${live[@]}"); e1=$(ticks 1); te=$(now)
span=$(echo "$te - $tb" | bc -l)
set_cpu=$(echo "100 * ($e - $b) / $clk / $span" | bc -l | xargs printf '%.1f')
one_cpu=$(echo "100 * ($e1 - $b1) / $clk / $span" | bc -l | xargs printf '%.2f')
rsss=$(for i in "${live[@]}"; do rss $i; echo; done | sort -n)
links1=$(python3 -c "import json,sys; print(sum(1 for l in json.load(open(sys.argv[1]))['Overlays'][0]['Status']['Links'] if l['State']=='Up'))" "$work/node1.status.json" 2>/dev/null || echo "?")
echo "2. idle over $(printf '%.0f' $span) s (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "   the whole set: $set_cpu% of one core (target < 50%): $(verdict "$set_cpu < 50")"
echo "   RSS per host: min $(echo "$rsss" | head -1) MB, median $(echo "$rsss" | sed -n "$(( (${#live[@]} + 1) / 2 ))p") MB, max $(echo "$rsss" | tail -1) MB"
echo "   host 1 with $links1 links: RSS $(rss 1) MB (target <= 60 MB): $(verdict "$(rss 1) <= 60"), CPU $one_cpu% of one core (target <= 1%): $(verdict "$one_cpu <= 1")"
echo "   host 1: $(pss 1), $(awk '/Threads/ {print $2}' /proc/${pids[1]}/status) threads"

# --- kill ---
if [ $nkill -gt 0 ]; then
  victims=(); step=$(( (n - 1) / nkill ))   # host 1 stays; with 32 and 8: hosts 2, 5, ... 23, every kind
  for k in $(seq 0 $((nkill - 1))); do victims+=($(( 2 + k * step ))); done
  echo
  tk=$(now)
  for v in "${victims[@]}"; do kill -KILL ${pids[$v]}; done
  for v in "${victims[@]}"; do wait ${pids[$v]} 2>/dev/null || true; pids[$v]=""; done
  back=$(all_pairs $limit $tk kill) && ok=1 || ok=0
  kinds_killed=$(for v in "${victims[@]}"; do echo ${kinds[$v]}; done | sort | uniq -c | awk '{printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2}')
  if [ $ok = 1 ]; then
    echo "3. $nkill killed at once (SIGKILL; $kinds_killed): the other $((n - nkill)) all pinged each other again $back s after (target <= 5 s): $(verdict "$back <= 5")"
  else
    echo "3. $nkill killed at once ($kinds_killed): $back (target <= 5 s): FAIL"
  fi
  ring_check && echo "   ring re-formed: PASS" || echo "   ring re-formed: not yet"
fi
if [ -n "${HOLD:-}" ]; then echo "holding: hosts ${pids[*]}, work $work; rm $work/hold to end"; touch $work/hold; while [ -f $work/hold ]; do sleep 1; done; fi
for i in $(alive); do grep -l -i -E "unhandled|fatal" "$work/host-$i.log" >/dev/null 2>&1 && { echo "host $i logged:"; grep -i -E "unhandled|fatal" "$work/host-$i.log" | head -3; }; done
exit 0
