#!/usr/bin/env bash
# Installs Strudel's reference implementation of the mini-notation (@strudel/mini
# and @strudel/core, version 1.1.0) from npm into target/strudel (outside version
# control), for the conformance test (tests/mini_conformance.rs). Does nothing when
# it is already there; fails with a clear message when npm cannot fetch it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.1.0
dir=target/strudel
installed() {
    for p in mini core; do
        f="$dir/node_modules/@strudel/$p/package.json"
        [ -f "$f" ] && grep -q "\"version\": \"$version\"" "$f" || return 1
    done
}
if installed; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is not installed; run ./scripts/deps.sh (it installs nodejs and npm)" >&2
    exit 1
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{ "name": "jamrig-strudel-reference", "private": true }' >"$dir/package.json"
echo "installing @strudel/mini and @strudel/core $version into $dir (for the conformance test)" >&2
if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@strudel/mini@$version" "@strudel/core@$version" >&2; then
    echo "error: npm could not install @strudel/mini@$version and @strudel/core@$version; the mini-notation conformance test needs them (check that the npm registry is reachable, then run ./scripts/strudel.sh)" >&2
    exit 1
fi
installed || { echo "error: $dir does not hold @strudel/mini and @strudel/core $version after npm install" >&2; exit 1; }
