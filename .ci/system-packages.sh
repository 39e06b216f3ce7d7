#!/usr/bin/env bash
# Check the Debian packages the portal needs at run and test time, and install
# the missing ones when running as root.
#   libpango-1.0-0, libpangoft2-1.0-0  Pango, used by WeasyPrint to render PDFs
#   libharfbuzz-subset0                fast font subsetting for PDF output
#   fonts-ipaexfont                    IPAex Japanese fonts (Gothic and Mincho)
#   chromium                           headless browser for the browser tests
set -euo pipefail

PACKAGES=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-ipaexfont chromium)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-packages: dpkg-query not found: this does not look like a Debian-based system." >&2
    echo "system-packages: install the equivalents of these Debian packages by hand: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "system-packages: missing Debian packages: ${missing[*]}" >&2

if [ "$(id -u)" -ne 0 ]; then
    echo "system-packages: not running as root; install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "system-packages: installing: ${missing[*]}" >&2
if ! apt-get update; then
    echo "system-packages: 'apt-get update' failed" >&2
    exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null; then
    echo "system-packages: 'apt-get install ${missing[*]}' failed" >&2
    exit 1
fi
