#!/usr/bin/env bash
# The production-runtime half of .ci/run, inside the trixie root file system (chroot, checkout in /build).
set -euo pipefail
cd /build
echo "[ci:prod] node $(node --version), npm $(npm --version), $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
npm ci --no-audit --no-fund
# What the image build checks: the recorded uWS binary, by sha256, loads natively on this Node and glibc.
node scripts/verify-uws.mjs --load
npm test -- --reporter=default --reporter=json --outputFile=.ci-results.json
