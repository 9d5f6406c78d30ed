#!/bin/sh
# Install Debian's chromium for the browser test (tests/gw_browser.rs) when it is missing.
# Called by `make test`; does nothing when /usr/bin/chromium exists.
set -e
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
echo "ensure-chromium: installing Debian chromium (headless browser test)"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
