#!/usr/bin/env bash
# `make`'s first step: a .venv made by a Python >= 3.11, so a wrong Python fails here, in plain words, and not
# later in pip with "Could not find a version that satisfies the requirement ...".
#
#   venv.sh VENV [PYTHON]
#
# PYTHON given (make ... PYTHON=python3.12): that one, or an error saying why not. PYTHON empty: the .venv that
# is already there if its Python is good, else the first of python3, python3.14 ... python3.11 on PATH that is.
# A .venv made by another Python is removed and made again. VENV/.python names the Python that made it; it is
# rewritten only when .venv is made, so make reinstalls the locks exactly when the Python changed.
set -euo pipefail

venv=$1
wanted=${2:-}
MINIMUM=3.11
CANDIDATES=(python3 python3.14 python3.13 python3.12 python3.11)
HELP="README.md, \"The two commands\", says how to get one"

# "VERSION REALPATH" of a Python, and exit 0 only if it is >= MINIMUM; nothing when it is not a Python.
identify() {
	"$1" -c 'import os, sys
print("%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.executable))
sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null
}

fail() {
	echo "error: $1" >&2
	exit 1
}

if [ -n "$wanted" ]; then
	command -v "$wanted" >/dev/null || fail "PYTHON=$wanted: no such program. Name a Python >= $MINIMUM, e.g. make run PYTHON=python3.11 ($HELP)"
	if ! found=$(identify "$wanted"); then
		version=${found%% *}
		fail "PYTHON=$wanted is Python ${version:-of an unknown version}; this demo needs Python >= $MINIMUM. Install one and name it, e.g. make run PYTHON=python3.11 ($HELP)"
	fi
	python=$wanted
else
	# The .venv there is kept while its Python is good: PYTHON= is how to change it.
	if [ -x "$venv/bin/python" ] && found=$(identify "$venv/bin/python"); then
		[ -f "$venv/.python" ] || echo "$found" >"$venv/.python"
		exit 0
	fi
	python=
	seen=()
	for candidate in "${CANDIDATES[@]}"; do
		command -v "$candidate" >/dev/null || continue
		if found=$(identify "$candidate"); then
			python=$candidate
			break
		fi
		seen+=("$candidate is ${found%% *}")
	done
	if [ -z "$python" ]; then
		fail "no Python >= $MINIMUM on PATH${seen:+ (${seen[*]})}. Install one and name it, e.g. make run PYTHON=/usr/bin/python3.11 ($HELP)"
	fi
fi

# Keep a .venv made by this same Python; make a new one otherwise.
if [ -e "$venv" ]; then
	made_by=$( ([ -x "$venv/bin/python" ] && identify "$venv/bin/python") || true)
	if [ "$made_by" = "$found" ]; then
		[ -f "$venv/.python" ] || echo "$found" >"$venv/.python"
		exit 0
	fi
	echo "==> $venv was made by ${made_by:+Python }${made_by:-a Python that no longer runs}: making it again with $python (Python $found)"
	rm -rf "$venv"
fi

echo "==> creating $venv with $python (Python ${found%% *})"
if ! "$python" -m venv "$venv" 2>/dev/null; then
	rm -rf "$venv"
	# Debian and Ubuntu ship the venv module apart from Python.
	version=${found%% *}
	package=python${version%.*}-venv
	if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
		fail "$python has no working venv module. On Debian/Ubuntu: sudo apt-get install $package; then run make again"
	fi
	echo "==> $python has no venv module: installing $package with apt-get (Debian/Ubuntu)"
	apt-get update -qq && apt-get install -y -qq "$package" >/dev/null
	"$python" -m venv "$venv"
fi
echo "$found" >"$venv/.python"
