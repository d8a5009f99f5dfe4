#!/usr/bin/env bash
# Where the machine's CPU goes while one TCP stream (iperf3) crosses the raw veth and then an Overlay link, on the same
# two namespaces: per path its Mbit/s, the cores the whole machine was busy (from /proc/stat: everything but idle, iowait
# and the hypervisor's steal), and the CPU time it spent per Gbit carried. For the Overlay path, with perf(1) present, a
# system-wide profile splits that time between the hosts' kernel work (TAP and UDP system calls, and the TCP work they
# set off), libcrypto (AES-GCM), the .NET code, libc and the rest, iperf3, and idle. The last lines reckon what the
# throughput target of issue #14 (45% of the raw veth in the same run) would take at the cost per Gbit measured here.
# usage: sudo tests/bench/cpu-budget.sh [seconds] [runs]      (paths alternate: raw, Overlay, Overlay, raw, ...)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
secs=${1:-10}; runs=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
need=(); for p in iperf3 iproute2 iputils-ping bc; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
[ ${#need[@]} -eq 0 ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
has_perf=0; perf --version >/dev/null 2>&1 && has_perf=1

P=bcpu$$; A=$P-a; B=$P-b; work=$(mktemp -d)
cleanup() {
  "$here/overlay-pair.sh" stop $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work" 2>/dev/null || true
  for n in $A $B; do for pid in $(ip netns pids $n 2>/dev/null); do kill $pid 2>/dev/null || true; done; done
  sleep 0.2; for n in $A $B; do ip netns del $n 2>/dev/null || true; done; rm -rf "$work"
}
trap cleanup EXIT
. "$here/veth-pair.sh"; veth_pair $A $B $P

# The .NET runtime writes /tmp/perf-PID.map for perf to name its compiled code (nothing else changes).
DOTNET_PerfMapEnabled=3 "$here/overlay-pair.sh" start $A $B 192.0.2.1 192.0.2.2 10.203.0.1 10.203.0.2 "$work"
for _ in $(seq 300); do ip netns exec $A ping -c1 -W0.1 10.203.0.2 >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec $A ping -c1 -W1 10.203.0.2 >/dev/null || { echo "the Overlay link did not come up"; exit 1; }
hosts="$(cat $work/overlay/host-1.pid) $(cat $work/overlay/host-2.pid)"

# measure PATH ADDR: one iperf3 stream; prints "Mbit/s busy-cores steal%" and, for Overlay with perf, keeps a profile
measure() {
  local path=$1 addr=$2 srv cl
  ip netns exec $B iperf3 -s -B $addr >/dev/null 2>&1 & srv=$!
  for _ in $(seq 100); do ip netns exec $B ss -ltn | grep -q "$addr:5201" && break; sleep 0.05; done
  ip netns exec $A iperf3 -c $addr -t $((secs + 2)) -J > $work/iperf.json 2>/dev/null & cl=$!
  sleep 1 # past slow start; the window below ends before the stream does
  local -a s0=($(head -1 /proc/stat))
  if [ $path = overlay ] && [ $has_perf = 1 ]; then perf record -q -F 499 -a -o $work/perf.data -- sleep $secs >/dev/null 2>&1
  else sleep $secs; fi
  local -a s1=($(head -1 /proc/stat))
  wait $cl || true; kill $srv 2>/dev/null; wait $srv 2>/dev/null || true
  local bps; bps=$(grep -o '"bits_per_second":[^,]*' $work/iperf.json | tail -1 | cut -d: -f2 | tr -d '[:space:]')
  echo "${s0[*]} ${s1[*]}" | awk -v n="$(nproc)" -v bps="${bps:-0}" '{
    t = 0; for (k = 2; k <= 9; k++) t += $(k + 11) - $k
    idle = ($16 - $5) + ($17 - $6); steal = $20 - $9
    printf "%.0f %.2f %.1f", bps / 1e6, t ? n * (t - idle - steal) / t : 0, t ? 100 * steal / t : 0 }'
}

# split: the Overlay profile's shares (% of all samples, idle included) by who ran and in what; the hosts' samples are
# those of their threads (perf's "pid" key is the thread)
split() {
  local tids; tids=" $(for h in $hosts; do ls /proc/$h/task; done | tr '\n' ' ') "
  perf report -i $work/perf.data --no-children --sort pid,dso --stdio -g none 2>/dev/null | grep '%' | awk -F '  +' -v tids="$tids" '
    { p = $2; sub("%", "", p); tid = $3; sub(":.*", "", tid); comm = $3; sub("^[0-9]+:", "", comm); dso = $4
      if (index(tids, " " tid " ")) {
        if (dso ~ /kernel/) k[1] += p; else if (dso ~ /libcrypto/) k[2] += p; else if (dso ~ /JIT|\.dll|memfd/) k[3] += p; else k[4] += p
      } else if (comm ~ /^iperf3/) k[5] += p; else if (comm ~ /^swapper/) k[6] += p; else k[7] += p }
    END { split("hosts: kernel|hosts: libcrypto|hosts: .NET code|hosts: libc and runtime|iperf3|idle|other", o, "|")
          for (i = 1; i <= 7; i++) printf "%s %.1f%%%s", o[i], k[i], i < 7 ? "; " : "" }'
}

echo "date: $(date -u '+%F %H:%M') UTC, machine: $(nproc) cores, $(uname -r), iperf3 one TCP stream, ${secs} s windows, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-9s %8s %12s %8s %16s\n' run path Mbit/s "busy cores" "steal %" "core-s per Gbit"
for run in $(seq $runs); do
  order="raw overlay"; [ $((run % 2)) = 0 ] && order="overlay raw"
  for path in $order; do
    addr=192.0.2.2; [ $path = overlay ] && addr=10.203.0.2
    read -r mbit cores steal <<< "$(measure $path $addr)"
    per=$(echo "$mbit $cores" | awk '$1 > 0 {printf "%.3f", $2 / ($1 / 1000)}')
    printf '%-5s %-9s %8s %12s %8s %16s\n' $run $path $mbit $cores $steal "$per"
    eval "mbit_$path=$mbit per_$path=$per"
    [ $path = overlay ] && [ $has_perf = 1 ] && overlay_split=$(split)
  done
  [ -n "${overlay_split:-}" ] && echo "      Overlay's machine time: $overlay_split"
  echo "$mbit_raw $per_overlay $per_raw" | awk -v n=$(nproc) '{
    goal = 0.45 * $1; printf "      45%% of this run'\''s raw veth: %.0f Mbit/s, which at Overlay'\''s %.3f core-s per Gbit takes %.2f of the %d cores (Overlay costs %.1fx the raw path per byte)\n",
      goal, $2, $2 * goal / 1000, n, $2 / $3 }'
done
