#!/usr/bin/env bash
# Rewrites src/PeerSharp/PublicAPI.Unshipped.txt from the code: every public symbol of the library that
# PublicAPI.Shipped.txt (the API of released versions) does not list. Run it after changing the public API on
# purpose, or after a merge that did, and commit the file: its diff is the API change under review.
#
# It never edits PublicAPI.Shipped.txt. A shipped symbol that is gone (RS0017) is a breaking change: it is
# listed and the script fails; to break on purpose, add `*REMOVED*` + the line to Unshipped and bump the
# version as CHANGELOG.md says. `--ship` (at a release) moves every Unshipped line into Shipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="$root/src/PeerSharp"
shipped="$project/PublicAPI.Shipped.txt"
unshipped="$project/PublicAPI.Unshipped.txt"
header='#nullable enable'

if [ "${1:-}" = "--ship" ]; then
  { echo "$header"; { grep -v "^$header\$" "$shipped"; grep -v "^$header\$" "$unshipped"; } \
      | grep -v '^\*REMOVED\*' | grep -v '^$' | LC_ALL=C sort -u; } > "$shipped.tmp"
  # A line marked *REMOVED* in Unshipped leaves Shipped with it.
  grep '^\*REMOVED\*' "$unshipped" | sed 's/^\*REMOVED\*//' | while IFS= read -r line; do
    grep -vxF -- "$line" "$shipped.tmp" > "$shipped.tmp2" || true; mv "$shipped.tmp2" "$shipped.tmp"
  done
  mv "$shipped.tmp" "$shipped"
  echo "$header" > "$unshipped"
  echo "Moved the unshipped API into $(realpath --relative-to="$root" "$shipped")."
  exit 0
fi

# Keep the *REMOVED* lines (deliberate breaks), drop the rest, and let the analyzer name what is missing.
removed=$(grep '^\*REMOVED\*' "$unshipped" || true)
{ echo "$header"; [ -z "$removed" ] || echo "$removed"; } > "$unshipped"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Warnings, not errors, for this one build (PeerSharpStrictPublicApi); --no-incremental so that the analyzers run.
dotnet build "$project/PeerSharp.csproj" --no-incremental -nologo -p:PeerSharpStrictPublicApi=false > "$log" 2>&1 || {
  grep -E ' error ' "$log" | sort -u >&2 || cat "$log" >&2
  echo "update-public-api: the library does not build; fix that first." >&2
  exit 1
}
symbols() { sed -n "s/.*warning $1: Symbol '\(.*\)' $2.*/\1/p" "$log" | LC_ALL=C sort -u; }
added=$(symbols RS0016 'is not part of the declared public API')
{ echo "$header"; { [ -z "$removed" ] || echo "$removed"; [ -z "$added" ] || echo "$added"; } | LC_ALL=C sort -u; } > "$unshipped"
echo "$(realpath --relative-to="$root" "$unshipped"): $(echo -n "$added" | grep -c '^' || true) unshipped symbols."

gone=$(symbols RS0017 'is part of the declared API, but is either not public or could not be found')
if [ -n "$gone" ]; then
  echo "Shipped API that the code no longer has (a breaking change):" >&2
  echo "$gone" | sed 's/^/  /' >&2
  echo "Restore it, or mark each line *REMOVED* in PublicAPI.Unshipped.txt and bump the version (CHANGELOG.md)." >&2
  exit 1
fi
