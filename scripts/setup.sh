#!/usr/bin/env bash
# Everything netctx and its tests need on a fresh Debian 12 machine, as root. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(nftables iproute2 iputils-ping util-linux procps ca-certificates)
# The CNI path is tested with podman 4.3 (CNI backend) as the real client: test/cni/podman.test.ts.
packages+=(podman crun conmon containernetworking-plugins busybox-static tar)
# better-sqlite3 falls back to compiling when its prebuilt binary cannot be downloaded; the CNI client is C.
packages+=(build-essential python3)
# The CNI plugin's hand-off without a C compiler, and the bench's way to settle the engine.
packages+=(curl)
# Multi-host networks keep their shared state in etcd (issue 18); the tests run a 3-member cluster and make TLS
# certificates with openssl.
packages+=(etcd-server etcd-client openssl)
# The DNS bench runs podman's DNS server next to ours under dnsperf's load (issue 20); the dashboard is tested in a
# real headless browser (issue 21).
packages+=(aardvark-dns dnsperf chromium)
# `netctx completion zsh|fish` scripts are parsed by their shells in test/cli/habits-issue21.test.ts.
packages+=(zsh fish)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "netctx needs Node.js 20 or newer (apt-get install nodejs from NodeSource, or nvm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
npm run build
