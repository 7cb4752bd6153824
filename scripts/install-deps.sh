#!/usr/bin/env bash
# Installs what Surge needs on Debian 12: PHP 8.2 with its headers, clang for bindgen and Rust
# to build the extension; with --test also Redis, Chromium, valgrind, Node and Python packages
# for the test suite (into .deps/ and node_modules/ inside the clone, nothing global but apt)
# and rustfmt and cargo-fuzz for its format check and fuzz smoke run (beside Rust, in ~/.cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

packages=(php8.2-cli php8.2-dev libclang-dev clang make curl ca-certificates git)
if $with_tests; then
  packages+=(redis-server redis-tools chromium python3 python3-venv nodejs npm openssl valgrind iproute2)
  # The Laravel 8 test application (tests/laravel) is assembled from Debian packages, no Composer.
  packages+=(php-laravel-framework php-predis php-redis php8.2-sqlite3 php8.2-mbstring)
fi
# A machine may already have its own Node or Python; do not fight it with Debian's.
skip=" "
command -v node >/dev/null && command -v npm >/dev/null && skip+="nodejs npm "
command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 && skip+="python3 python3-venv "
missing=()
for p in "${packages[@]}"; do
  [[ "$skip" == *" $p "* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

source scripts/cargo-path.sh
if ! command -v cargo >/dev/null; then
  echo "==> installing Rust (rustup, stable)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  source scripts/cargo-path.sh
fi

if $with_tests; then
  if [ ! -x .deps/venv/bin/pytest ]; then
    echo "==> Python test packages into .deps/venv"
    python3 -m venv .deps/venv
  fi
  .deps/venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  if ! cargo fmt --version >/dev/null 2>&1; then
    if ! command -v rustup >/dev/null; then
      echo "rustfmt is missing and there is no rustup to add it: install rustfmt for this Rust" >&2
      exit 1
    fi
    echo "==> rustup component add rustfmt (the suite checks the Rust code's formatting)"
    rustup component add rustfmt
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    echo "==> cargo install cargo-fuzz (for the fuzz smoke run)"
    cargo install -q cargo-fuzz --locked
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    echo "==> Node test packages into node_modules"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
