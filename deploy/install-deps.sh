#!/bin/sh
# Installs the Debian 12 packages that building, running and testing Postino need.
# Idempotent: does nothing (and needs no network) when every package is already installed.
set -eu

PACKAGES="build-essential pkg-config make gcc libevent-dev libhiredis-dev libopendkim-dev \
libcmocka-dev libssl-dev openssl redis-server swaks python3 ca-certificates \
python3-dkim libmail-dkim-perl dnsmasq-base clang-format"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
# The Debian package starts a system-wide redis-server; Postino runs its own private one
# (or a configured one), so the packaged service is left as the system administers it.
