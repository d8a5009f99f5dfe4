#!/usr/bin/env bash
# The test command. Installs what the tests need when it is missing, builds, runs every test project
# and ends with one line "N passed, N failed, N skipped". Tests that need root or network namespaces
# skip with a reason when they cannot run, except under CI=true, where they must run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

packages=(prosody coturn iptables iproute2 iputils-ping iperf3 openssl procps psmisc conntrack
  curl python3 chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/overlay-apt.log 2>&1 \
      || { echo "apt-get install failed (see /tmp/overlay-apt.log)"; tail -20 /tmp/overlay-apt.log; }
  else
    echo "not root: cannot install ${missing[*]}; tests that need them will be skipped"
  fi
fi
# Packaged daemons must not run on their own: the tests start their own instances.
if [ "$(id -u)" = 0 ]; then
  for s in prosody coturn; do (service "$s" stop || true) >/dev/null 2>&1; done
fi

# One run at a time on a machine: runs share fixed namespaces' prefixes, prosody's port and the sweep below, which
# would otherwise delete a live run's namespaces. A second run waits for the first.
exec 9>/tmp/overlay-tests.lock
if command -v flock >/dev/null && ! flock -n 9; then
  echo "another test run holds /tmp/overlay-tests.lock: waiting for it to finish"
  flock 9
fi

# Namespaces left by an interrupted earlier run (the fixtures name theirs o<hex>-..., otap..., ow[ab]...).
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(o[0-9a-f]{5}-|otap[0-9a-f]{5}$|ow[ab][0-9a-f]{5}$)' || true); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
fi

dotnet restore Overlay.sln || exit 1
dotnet build Overlay.sln -c Release --no-restore -nologo -v:q || exit 1

results="$root/TestResults"
rm -rf "$results"; mkdir -p "$results"
projects=(tests/*.Tests/*.Tests.csproj)
status=0
aborted=()
for proj in "${projects[@]}"; do
  name=$(basename "$proj" .csproj)
  echo "=== $name"
  if ! dotnet test "$proj" -c Release --no-build --nologo \
    --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=normal" \
    --results-directory "$results" --blame-hang-timeout 10m; then
    status=1
    aborted+=("$name")
  fi
done

passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  total=$(get total); executed=$(get executed); p=$(get passed); f=$(get failed); e=$(get error); t=$(get timeout); a=$(get aborted)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0} + ${t:-0} + ${a:-0}))
  skipped=$((skipped + ${total:-0} - ${executed:-0}))
done
# A project whose run failed without a failed test in its results crashed or was aborted: count it as a failure.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "test run aborted in: ${aborted[*]}"
  failed=${#aborted[@]}
fi
[ "$failed" -gt 0 ] && status=1
[ "$passed" -eq 0 ] && status=1
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
