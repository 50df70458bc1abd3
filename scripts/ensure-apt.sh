#!/usr/bin/env bash
# Installs the Debian packages given as arguments when they are missing, and only then.
#
# Quick when everything is present (one dpkg-query per package, no network). Otherwise runs
# `apt-get update` once and installs just the missing packages, non-interactively and without
# recommends. Meant to run as root (CI and the dev box have no sudo); uses sudo only when it is
# not root and sudo exists.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    exit 0
fi

missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "ensure-apt: missing packages (${missing[*]}) and not root: install them by hand" >&2
        exit 1
    fi
fi

echo "ensure-apt: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
