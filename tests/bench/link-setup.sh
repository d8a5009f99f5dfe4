#!/usr/bin/env bash
# Link setup medians in the NAT lab (from the moment a host asks for the link, its first signal, to the link up, as the
# initiating Overlay.Host logs it), 10 runs per path kind: host (no NAT), srflx (two cone NATs), relay-udp (symmetric to
# cone), relay-tcp (UDP dropped at one cone NAT: TURN over TCP). Per kind it prints the median, and the median of each
# setup phase at the initiator (offer out, candidates gathered, answer in, the peer's first trickled candidate, ICE
# selected, DTLS authenticated, in ms since it asked); then throughput over TURN/TCP and TURN/TLS (iperf3, 100 MiB).
# With a git revision it measures that revision's Overlay.Host as well ("before"; relay-tcp only where it exists).
# usage: sudo tests/bench/link-setup.sh [before-revision] [runs]      e.g. sudo tests/bench/link-setup.sh 4f4bfbd
#        KINDS=srflx,relay-tcp limits the path kinds measured.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
before=${1:-}; runs=${2:-10}; kinds=${KINDS:-host,srflx,relay-udp,relay-tcp}
cd "$repo"
dotnet build Overlay.sln -c Release -v:q -nologo >/dev/null
measure() { # LABEL KINDS [HOST_DLL]
  OVERLAY_SETUP_RUNS=$runs OVERLAY_SETUP_KINDS=$2 OVERLAY_HOST_DLL=${3:-} dotnet test tests/Overlay.Core.Tests -c Release --no-build \
    --filter "FullyQualifiedName~HostTurnLabTests.Link_setup_medians" --logger "console;verbosity=detailed" 2>&1 |
    grep -E '^SETUP |^  Error Message|timed out' | sed "s/^SETUP /$1 /" | sort -u || true
}
if [ -n "$before" ]; then
  tree=$(mktemp -d); trap 'git -C "$repo" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
  git worktree add --detach "$tree" "$before" >/dev/null 2>&1
  dotnet build "$tree/samples/Overlay.Host" -c Release -v:q -nologo >/dev/null
  measure "before ($before)" "$(echo "$kinds" | sed 's/,*relay-tcp//')" "$tree/samples/Overlay.Host/bin/Release/net10.0/Overlay.Host.dll"
fi
measure "after ($(git rev-parse --short HEAD))" "$kinds"
dotnet test tests/Overlay.Core.Tests -c Release --no-build --filter "FullyQualifiedName~HostTurnLabTests.With_udp_dropped" \
  --logger "console;verbosity=detailed" 2>&1 | grep -E '^iperf3 100 MiB' | sort -u
