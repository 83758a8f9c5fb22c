#!/bin/sh
# iso8583_npm driver: gen_msgs (lib/iso8583) -> check_npm.js (npm package iso_8583).
#   run_npm_check.sh GEN_MSGS WORK_DIR [DEPS_DIR]
# The package comes from DEPS_DIR (scripts/install-deps puts iso_8583@2.6.7 into .deps/npm),
# else it is installed once into WORK_DIR (npm install --no-save --prefix WORK_DIR
# iso_8583@2.6.7); without node, npm or the registry the test is skipped (exit 77), never passed.
set -u
gen=$1
work=$2
deps=${3:-}
here=$(dirname "$0")
if ! command -v node >/dev/null 2>&1; then
    echo "skip: node is not installed (Debian packages nodejs npm)"
    exit 77
fi
mkdir -p "$work"
if [ -n "$deps" ] && [ -f "$deps/node_modules/iso_8583/package.json" ]; then
    modules="$deps/node_modules"
elif [ -f "$work/node_modules/iso_8583/package.json" ]; then
    modules="$work/node_modules"
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "skip: npm is not installed (Debian package npm)"
        exit 77
    fi
    if ! npm install --no-save --no-audit --no-fund --prefix "$work" iso_8583@2.6.7 >"$work/npm.log" 2>&1; then
        echo "skip: npm install iso_8583 failed (no registry?), see $work/npm.log"
        exit 77
    fi
    modules="$work/node_modules"
fi
echo "iso_8583 $(node -p "require('$modules/iso_8583/package.json').version")"
"$gen" >"$work/messages.json" || exit 1
exec node "$here/check_npm.js" "$modules" "$work/messages.json"
