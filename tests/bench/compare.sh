#!/usr/bin/env bash
# Compares Overlay with OpenVPN (tap, static key), tinc 1.0 (switch mode) and wireguard-go (userspace, L3) on this
# machine: two network namespaces joined by one veth, all VPNs up at once; TCP throughput (iperf3, one stream,
# one path at a time) and ping RTT through the raw veth and through each VPN's devices. The pings go in
# rounds that take turns between the paths (20 rounds of 10 per path), so a virtual machine's drift in wake-up
# latency, and its bursts of slow replies (a few seconds long, on every path at once), fall on every path alike.
# Each throughput row also shows the share of the machine's CPU time the hypervisor took from it ("steal") during
# that row's iperf3: on a shared virtual machine that, not the path, is what moves a row most between runs.
# Two more Overlay rows come from four hosts on a bridge of their own:
# "forwarding", between two hosts whose UDP to each other is dropped (iptables), so no link can form between them and
# the ring carries their traffic through a third host; and "two peers", one host sending to two peers at once (two
# iperf3 streams, their sum). Prints one table per run: throughput, and RTT mean, median, 90th percentile and maximum;
# with several runs (each measures every path in turn, the order reversed every other run) also each figure's range.
# usage: sudo tests/bench/compare.sh [seconds] [runs]     (installs openvpn, tinc, wireguard-go, iperf3 when missing)
#        KEEP_RTT=DIR keeps every reply's time, one file per path and run (rtt-0.1 is the raw veth in run 1).
#        EVENT_LOOPS=N runs the Overlay hosts with N event loops each (default: one per core).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
secs=${1:-10}; runs=${2:-1}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
need=(); for p in openvpn tinc wireguard-go wireguard-tools iperf3 iproute2 iptables iputils-ping bc; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }

P=bcmp$$; A=$P-a; B=$P-b; X=$P-x; work=$(mktemp -d)
group=("$P-n1" "$P-n2" "$P-n3" "$P-n4")
cleanup() {
  for n in $A $B $X "${group[@]}"; do for pid in $(ip netns pids $n 2>/dev/null); do kill $pid 2>/dev/null || true; done; done
  sleep 0.2; for n in $A $B $X "${group[@]}"; do ip netns del $n 2>/dev/null || true; done
  [ -n "${KEEP_RTT:-}" ] && cp $work/rtt-* "$KEEP_RTT"/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
. "$here/veth-pair.sh"; veth_pair $A $B $P

# wait_ping NS ADDR: until the address answers (a VPN is up), at most 30 s
wait_ping() { for _ in $(seq 300); do ip netns exec $1 ping -c1 -W0.1 $2 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
names=(); addrs=(); froms=(); tos=()
# add_path NAME ADDR [FROM_NS TO_NS]: from A to B unless named; "ADDR1+ADDR2" with "NS1+NS2" is two streams at once
add_path() { names+=("$1"); addrs+=("$2"); froms+=("${3:-$A}"); tos+=("${4:-$B}"); }
# throughput I: iperf3 along path I (Mbit/s, or "down"); one stream per address, at once, summed
throughput() {
  local from=${froms[$1]} addr srvs=() clients=() k=0 total=0
  local -a as=(${addrs[$1]//+/ }) ns=(${tos[$1]//+/ })
  for addr in "${as[@]}"; do wait_ping $from $addr || { echo down; return; }; done
  for addr in "${as[@]}"; do
    ip netns exec ${ns[$k]} iperf3 -s -B $addr >/dev/null 2>&1 & srvs+=($!)
    for _ in $(seq 100); do ip netns exec ${ns[$k]} ss -ltn | grep -q "$addr:5201" && break; sleep 0.05; done
    k=$((k + 1))
  done
  k=0
  local -a cpu_before=($(head -1 /proc/stat))
  for addr in "${as[@]}"; do ip netns exec $from iperf3 -c $addr -t $secs -J > $work/iperf-$k.json 2>/dev/null & clients+=($!); k=$((k + 1)); done
  for c in "${clients[@]}"; do wait $c 2>/dev/null || true; done
  local -a cpu_after=($(head -1 /proc/stat))
  echo "${cpu_before[*]} ${cpu_after[*]}" | awk '{t = 0; for (k = 2; k <= 9; k++) t += $(k + 11) - $k; printf "%.1f", t ? 100 * ($20 - $9) / t : 0}' > $work/steal-$1.$run
  for s in "${srvs[@]}"; do kill $s 2>/dev/null; wait $s 2>/dev/null || true; done
  for k in "${!as[@]}"; do
    local bps; bps=$(grep -o '"bits_per_second":[^,]*' $work/iperf-$k.json | tail -1 | cut -d: -f2)
    total=$(echo "$total + ${bps:-0}" | bc -l)
  done
  printf '%.0f' "$(echo "$total / 1000000" | bc -l)"
}

add_path "raw veth" 192.0.2.2

# OpenVPN 2.6, tap, static (pre-shared) key: AES-GCM needs TLS mode, so AES-256-CBC + HMAC-SHA256
openvpn --genkey secret $work/ovpn.key 2>/dev/null
for side in a b; do
  if [ $side = a ]; then ns=$A; loc=192.0.2.1; rem=192.0.2.2; ip=10.201.0.1; else ns=$B; loc=192.0.2.2; rem=192.0.2.1; ip=10.201.0.2; fi
  ip netns exec $ns openvpn --dev ovpn0 --dev-type tap --secret $work/ovpn.key --cipher AES-256-CBC --auth SHA256 \
    --local $loc --remote $rem --port 1194 --ifconfig $ip 255.255.255.0 --verb 1 --log $work/ovpn-$side.log \
    --daemon --writepid $work/ovpn-$side.pid
done
add_path "OpenVPN 2.6 (tap, static)" 10.201.0.2

# tinc 1.0, switch mode
for side in a b; do
  d=$work/tinc-$side; mkdir -p $d/hosts
  other=$([ $side = a ] && echo b || echo a)
  ip=$([ $side = a ] && echo 10.202.0.1 || echo 10.202.0.2)
  addr=$([ $side = a ] && echo 192.0.2.1 || echo 192.0.2.2)
  printf 'Name = node%s\nMode = switch\nDeviceType = tap\nInterface = tinc0\nAddressFamily = ipv4\nConnectTo = node%s\n' $side $other > $d/tinc.conf
  printf 'Address = %s\nPort = 655\n' $addr > $d/hosts/node$side
  printf '#!/bin/sh\nip link set $INTERFACE up\nip addr add %s/24 dev $INTERFACE\n' $ip > $d/tinc-up; chmod +x $d/tinc-up
  tincd -c $d -K2048 </dev/null >/dev/null 2>&1
done
cp $work/tinc-a/hosts/nodea $work/tinc-b/hosts/; cp $work/tinc-b/hosts/nodeb $work/tinc-a/hosts/
ip netns exec $A tincd -c $work/tinc-a --pidfile=$work/tinc-a.pid --logfile=$work/tinc-a.log
ip netns exec $B tincd -c $work/tinc-b --pidfile=$work/tinc-b.pid --logfile=$work/tinc-b.log
add_path "tinc 1.0 (switch)" 10.202.0.2

# wireguard-go (Debian's userspace build; L3, so ping and TCP go over its own interface): its interfaces are named apart
# ("wgcmp-a", "wgcmp-b": the name is also its control socket's, in /var/run/wireguard, which namespaces share) and the
# Overlay hosts leave them out of ICE
for side in a b; do (umask 077; wg genkey > $work/wg-$side.key); wg pubkey < $work/wg-$side.key > $work/wg-$side.pub; done
for side in a b; do
  if [ $side = a ]; then ns=$A; rem=192.0.2.2; ip=10.204.0.1; peer=10.204.0.2; other=b
  else ns=$B; rem=192.0.2.1; ip=10.204.0.2; peer=10.204.0.1; other=a; fi
  ip netns exec $ns env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go wgcmp-$side >/dev/null 2>&1
  ip netns exec $ns wg set wgcmp-$side private-key $work/wg-$side.key listen-port 51820 \
    peer "$(cat $work/wg-$other.pub)" allowed-ips $peer/32 endpoint $rem:51820
  ip -n $ns addr add $ip/24 dev wgcmp-$side; ip -n $ns link set wgcmp-$side up
done
add_path "wireguard-go (L3)" 10.204.0.2

# Overlay: two hosts with TAPs, one link over the veth (see samples/Overlay.Host)
overlay=0
if [ -x "$here/overlay-pair.sh" ]; then
  "$here/overlay-pair.sh" start $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work" && overlay=1
fi
add_path "Overlay" 10.203.0.2

# Four more Overlay hosts on a bridge of their own (192.0.5.0/24, prosody on the bridge at .10), overlay 10.205.0.0/24.
# Host 1 drops UDP to and from host 4, so those two never link and the ring forwards between them through another host.
ip netns add $X; ip -n $X link set lo up; ip -n $X link add br0 type bridge
ip -n $X addr add 192.0.5.10/24 dev br0; ip -n $X link set br0 up
members=()
for k in 1 2 3 4; do
  n=${group[$((k - 1))]}; ip netns add $n; ip -n $n link set lo up
  ip link add $P-g$k type veth peer name $P-g${k}b
  ip link set $P-g$k netns $n; ip link set $P-g${k}b netns $X
  ip -n $X link set $P-g${k}b master br0; ip -n $X link set $P-g${k}b up
  ip -n $n addr add 192.0.5.$k/24 dev $P-g$k; ip -n $n link set $P-g$k up
  members+=("$n:10.205.0.$k")
done
ip netns exec ${group[0]} iptables -A OUTPUT -d 192.0.5.4 -p udp -j DROP
ip netns exec ${group[0]} iptables -A INPUT -s 192.0.5.4 -p udp -j DROP
grouped=0
"$here/overlay-group.sh" start "$work" $X 192.0.5.10 "${members[@]}" && grouped=1
add_path "Overlay, forwarding" 10.205.0.4 ${group[0]} ${group[3]}
add_path "Overlay, two peers at once" 10.205.0.2+10.205.0.3 ${group[0]} ${group[1]}+${group[2]}

order=("${!names[@]}")
for run in $(seq $runs); do
  for i in "${order[@]}"; do eval "rate_${run}_$i=\$(throughput $i)"; done
  # RTT: rounds that take turns between the paths; every reply's time goes into the path's file (two-peer rows: none)
  for i in "${order[@]}"; do : > $work/rtt-$i.$run; done
  for round in $(seq 20); do
    for i in "${order[@]}"; do
      case ${addrs[$i]} in *+*) continue ;; esac
      [ $round = 1 ] && { wait_ping ${froms[$i]} ${addrs[$i]} || true; }
      ip netns exec ${froms[$i]} ping -c 10 -i 0.02 ${addrs[$i]} 2>/dev/null | grep -o 'time=[0-9.]*' | cut -d= -f2 >> $work/rtt-$i.$run || true
    done
  done
  order=($(printf '%s\n' "${order[@]}" | tac))   # the next run takes the paths in the reverse order
done
[ $overlay = 1 ] && "$here/overlay-pair.sh" stop $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work"
[ $grouped = 1 ] && "$here/overlay-group.sh" stop "$work"

# rtt_stats FILE: mean, p50, p90, max
rtt_stats() { sort -n $1 | awk '{a[NR]=$1; s+=$1} END {if (NR) printf "%.3f %.3f %.3f %.3f", s/NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]; else printf "- - - -"}'; }
rate() { eval "echo \${rate_${1}_$2}"; }
index_of() { for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && echo $i; done; return 0; }
echo "date: $(date -u +%F), machine: $(nproc) cores, $(uname -r), iperf3 -t $secs one TCP stream, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq $runs); do
  [ $runs -gt 1 ] && echo "run $run"
  printf '%-28s %10s %8s %12s %12s %12s %12s\n' "path" "Mbit/s" "steal %" "RTT mean ms" "RTT p50 ms" "RTT p90 ms" "RTT max ms"
  for i in "${!names[@]}"; do
    printf '%-28s %10s %8s %12s %12s %12s %12s\n' "${names[$i]}" "$(rate $run $i)" "$(cat $work/steal-$i.$run 2>/dev/null || echo -)" $(rtt_stats $work/rtt-$i.$run)
  done
  o=$(index_of Overlay); f=$(index_of "Overlay, forwarding"); t=$(index_of "Overlay, two peers at once")
  ratio() { echo "$1 $2" | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ && $2 > 0 {printf "%.2f", $1 / $2; exit} {printf "-"}'; }
  echo "forwarding / Overlay direct: $(ratio "$(rate $run $f)" "$(rate $run $o)"); two peers / one (Overlay row): $(ratio "$(rate $run $t)" "$(rate $run $o)")"
done
if [ $runs -gt 1 ]; then
  echo "over $runs runs: median (min-max)"
  printf '%-28s %22s %22s %22s\n' "path" "Mbit/s" "RTT mean ms" "RTT p50 ms"
  range() { sort -n | awk '$1 ~ /^[0-9.]+$/ {a[++n]=$1} END {if (n) printf "%s (%s-%s)", a[int((n+1)/2)], a[1], a[n]; else printf "-"}'; }
  for i in "${!names[@]}"; do
    r=$(for run in $(seq $runs); do rate $run $i; echo; done | range)
    m=$(for run in $(seq $runs); do rtt_stats $work/rtt-$i.$run | cut -d' ' -f1; echo; done | range)
    p=$(for run in $(seq $runs); do rtt_stats $work/rtt-$i.$run | cut -d' ' -f2; echo; done | range)
    printf '%-28s %22s %22s %22s\n' "${names[$i]}" "$r" "$m" "$p"
  done
fi
