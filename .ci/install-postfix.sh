#!/usr/bin/env bash
# Install the binaries used by the Postfix integration tests
# (tests/integration/postfix.py): postfix (incl. smtp-source/smtp-sink,
# postcat, postqueue) and OpenDKIM's miltertest.  Debian/Ubuntu, as root.
#
# Idempotent: does nothing if both are already installed.  The system
# Postfix instance is neither configured nor needed: the tests run a private
# instance from a temporary config directory on a random loopback port.
set -euo pipefail

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if installed postfix && installed miltertest; then
    echo "postfix $(postconf -dh mail_version) and miltertest already installed"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "must run as root (or via sudo)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Without this debconf asks which mail setup to create; "No configuration"
# installs the binaries without writing /etc/postfix/main.cf.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Keep apt from starting the system Postfix service.  Only add the
# policy-rc.d guard if the system has none (containers often do already).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -q --no-install-recommends postfix miltertest

postconf -dh mail_version
command -v miltertest smtp-source
