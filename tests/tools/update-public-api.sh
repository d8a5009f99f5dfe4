#!/usr/bin/env bash
# Regenerates the declared public API (src/*/PublicAPI.Unshipped.txt) from the code, for after a deliberate change
# to the public surface or a merge: the build fails with RS0016 (public but not declared) or RS0017 (declared but no
# longer public) until the files match. Review the diff: every line is a promise to package users.
# PublicAPI.Shipped.txt is left alone: at a release its lines move there by hand, and a shipped member that goes
# away stays an error (a breaking change) until someone decides so.
# usage: bash tests/tools/update-public-api.sh        (about a minute a pass, three passes)
set -euo pipefail
cd "$(dirname "$0")/../.."

for file in src/*/PublicAPI.Unshipped.txt; do
    printf '#nullable enable\n' > "$file"
done
# dotnet format (10.0) applies the RS0016 fix to one project per run: run it until a run changes nothing.
for pass in 1 2 3 4 5 6; do
    before=$(cat src/*/PublicAPI.Unshipped.txt | md5sum)
    dotnet format analyzers Overlay.sln --diagnostics RS0016 --severity info -v quiet
    after=$(cat src/*/PublicAPI.Unshipped.txt | md5sum)
    if [ "$before" = "$after" ]; then
        echo "public API declared after $pass passes:"
        wc -l src/*/PublicAPI.Unshipped.txt
        exit 0
    fi
done
echo "the declared API still changed after $pass passes" >&2
exit 1
