#!/usr/bin/env bash
# Packs PeerSharp and the peer tool into artifacts/, then uses them as a user would, from folders outside the
# repository: installs the tool into a fresh tool path and trains with it in an empty folder, and builds and runs
# copies of both samples against the packages (a few steps each). .ci/run runs it after the tests.
#
#   build/verify-packages.sh            the tool for this machine's platform only (a release packs all three)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
artifacts="$root/artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rid="$(dotnet --info | sed -n 's/^ *RID: *//p' | head -1)"
# libtorch's OpenMP threads sleep instead of spinning while they wait, as the peer command arranges for itself:
# spinning threads make a step many times slower on a machine busy with other work.
export OMP_WAIT_POLICY=PASSIVE
step() { echo; echo "== $*"; }

step "pack into artifacts/ (tool for $rid)"
rm -rf "$artifacts"
dotnet pack "$root/src/PeerSharp/PeerSharp.csproj" -c Release -o "$artifacts" -nologo -v:q
dotnet pack "$root/src/PeerSharp.Cli/PeerSharp.Cli.csproj" -c Release -o "$artifacts" -nologo -v:q -p:ToolPackageRuntimeIdentifiers="$rid"
ls -l "$artifacts"

# NuGet keeps every extracted package by id and version: drop earlier copies of ours, so that this run uses
# what it just packed.
packages="$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')"
rm -rf "$packages/peersharp" "$packages/peersharp.cli" "$packages/peersharp.cli.$rid"

step "dotnet tool install PeerSharp.Cli, then peer train in an empty folder"
dotnet tool install --tool-path "$work/tools" --add-source "$artifacts" PeerSharp.Cli
mkdir "$work/empty"
(cd "$work/empty" && "$work/tools/peer" train --preset tiny --steps 20 --sample-tokens 0 --out run)
test -f "$work/empty/run/checkpoint.json"

# The samples, copied out of the repository, with a NuGet.config that adds the local feed to the usual sources.
for sample in SwapFeedForward Generate; do
  mkdir "$work/$sample"
  cp "$root/samples/$sample"/*.csproj "$root/samples/$sample"/*.cs "$work/$sample/"
done
cat > "$work/NuGet.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="PeerSharp artifacts" value="$artifacts" />
  </packageSources>
</configuration>
CONFIG

step "sample SwapFeedForward: 20 steps on README.md"
(cd "$work/SwapFeedForward" && dotnet run -c Release -r "$rid" -- --text "$root/README.md" --steps 20)

step "sample Generate: 40 bytes from the tool's checkpoint"
(cd "$work/Generate" && dotnet run -c Release -r "$rid" -- "$work/empty/run/checkpoint.json" "The" 40)

step "packages verified"
