#!/usr/bin/env bash
# Installs what is needed, builds Surge and runs the chat room demo on http://127.0.0.1:9501
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
exec php -d extension="$(pwd)/build/surge.so" php/examples/chat/server.php
