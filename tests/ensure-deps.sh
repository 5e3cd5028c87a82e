#!/bin/bash
# Install the Debian packages listed in tests/packages.txt that are missing.
# Run it or source it. A no-op (one dpkg-query call) when everything is there.
# Not root: prints the apt-get command to run and fails.

p11m_ensure_deps() {
    local list
    local -a want missing
    list="$(dirname "${BASH_SOURCE[0]}")/packages.txt"
    mapfile -t want < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
    # dpkg-query prints one status line per known package; unknown ones go to stderr.
    mapfile -t missing < <(
        comm -23 <(printf '%s\n' "${want[@]}" | sort -u) \
            <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${want[@]}" 2>/dev/null |
                awk '$1 == "ii" { print $2 }' | sort -u))
    [ ${#missing[@]} -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        echo "p11mtls: missing packages: ${missing[*]}" >&2
        echo "run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
    echo "p11mtls: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 &&
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    p11m_ensure_deps
    exit
else
    p11m_ensure_deps || return 1 2>/dev/null || exit 1
fi
