#!/usr/bin/env bash
# Compares Overlay with OpenVPN (tap, static key) and tinc 1.0 (switch mode) on this machine:
# two network namespaces joined by one veth, all three VPNs up at once; TCP throughput (iperf3, one stream,
# one path at a time) and ping RTT through the raw veth and through each VPN's TAP devices. The pings go in
# rounds that take turns between the paths (5 rounds of 40 per path), so a virtual machine's drift in wake-up
# latency falls on every path alike. Prints one table: throughput, and RTT mean, median, 90th percentile and maximum.
# usage: sudo tests/bench/compare.sh [seconds]     (installs openvpn, tinc, iperf3 when missing)
#        KEEP_RTT=DIR keeps every reply's time, one file per path (rtt-0 is the raw veth), for a closer look.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
need=(); for p in openvpn tinc iperf3 iproute2 iputils-ping; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }

P=bcmp$$; A=$P-a; B=$P-b; work=$(mktemp -d)
cleanup() {
  for n in $A $B; do for pid in $(ip netns pids $n 2>/dev/null); do kill $pid 2>/dev/null || true; done; done
  sleep 0.2; ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true
  [ -n "${KEEP_RTT:-}" ] && cp $work/rtt-* "$KEEP_RTT"/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip link add $P-va type veth peer name $P-vb
ip link set $P-va netns $A; ip link set $P-vb netns $B
ip -n $A addr add 192.0.2.1/24 dev $P-va; ip -n $B addr add 192.0.2.2/24 dev $P-vb
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set $P-va up; ip -n $B link set $P-vb up

# wait_ping NS ADDR: until the address answers (a VPN is up), at most 30 s
wait_ping() { for _ in $(seq 300); do ip netns exec $1 ping -c1 -W0.1 $2 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
names=(); addrs=(); rates=()
add_path() { names+=("$1"); addrs+=("$2"); }
# throughput NAME ADDR: iperf3 from A to B's address (Mbit/s, or "down")
throughput() {
  local addr=$1
  wait_ping $A $addr || { echo down; return; }
  ip netns exec $B iperf3 -s -B $addr >/dev/null 2>&1 & local srv=$!
  for _ in $(seq 100); do ip netns exec $B ss -ltn | grep -q "$addr:5201" && break; sleep 0.05; done
  local bps; bps=$(ip netns exec $A iperf3 -c $addr -t $secs -J 2>/dev/null | grep -o '"bits_per_second":[^,]*' | tail -1 | cut -d: -f2)
  kill $srv 2>/dev/null; wait $srv 2>/dev/null || true
  printf '%.0f' "$(echo "${bps:-0} / 1000000" | bc -l)"
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

# Overlay: two hosts with TAPs, one link over the veth (see samples/Overlay.Host)
overlay=0
if [ -x "$here/overlay-pair.sh" ]; then
  "$here/overlay-pair.sh" start $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work" && overlay=1
fi
add_path "Overlay" 10.203.0.2

for i in "${!names[@]}"; do rates+=("$(throughput ${addrs[$i]})"); done
# RTT: rounds that take turns between the paths; every reply's time goes into the path's file
for i in "${!names[@]}"; do : > $work/rtt-$i; wait_ping $A ${addrs[$i]} || true; done
for round in 1 2 3 4 5; do
  for i in "${!names[@]}"; do
    ip netns exec $A ping -c 40 -i 0.02 ${addrs[$i]} 2>/dev/null | grep -o 'time=[0-9.]*' | cut -d= -f2 >> $work/rtt-$i || true
  done
done
[ $overlay = 1 ] && "$here/overlay-pair.sh" stop $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work"

echo "date: $(date -u +%F), machine: $(nproc) cores, $(uname -r), iperf3 -t $secs one TCP stream"
printf '%-28s %10s %12s %12s %12s %12s\n' "path" "Mbit/s" "RTT mean ms" "RTT p50 ms" "RTT p90 ms" "RTT max ms"
for i in "${!names[@]}"; do
  stats=$(sort -n $work/rtt-$i | awk '{a[NR]=$1; s+=$1} END {if (NR) printf "%12.3f %12.3f %12.3f %12.3f", s/NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]; else printf "%12s %12s %12s %12s", "-", "-", "-", "-"}')
  printf '%-28s %10s %s\n' "${names[$i]}" "${rates[$i]}" "$stats"
done
