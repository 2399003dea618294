# shellcheck shell=bash
# scripts/lib.sh: helpers shared by the scripts in this directory.
# Source it; it defines functions and variables only and runs nothing.

# The repository root, whichever directory the caller was started from.
DG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DG_ROOT

dg_log() {
	printf '%s\n' "$*"
}

dg_warn() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

dg_die() {
	dg_warn "$*"
	exit 1
}

# Runs a command as root: directly when we are root (CI), through sudo
# otherwise. sudo is never needed, nor required to be installed, as root.
dg_as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		command -v sudo >/dev/null 2>&1 ||
			dg_die "not root and sudo is not installed: cannot run $1"
		sudo "$@"
	fi
}

# True when the Debian package is fully installed (not merely known or
# half-configured), so a broken install gets repaired by the next setup.
dg_pkg_installed() {
	local status
	status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) ||
		return 1
	[ "$status" = installed ]
}

# Prints a file framed so that it stands out in a long CI log.
dg_print_log() {
	local title=$1 file=$2
	printf -- '----- %s -----\n' "$title"
	if [ -s "$file" ]; then
		cat -- "$file"
	else
		printf '(empty)\n'
	fi
	printf -- '----- end of %s -----\n' "$title"
}
