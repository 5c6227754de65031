#!/usr/bin/env bash
# `make`'s first step: a .venv made by a Python 3.11, 3.12 or 3.13, so a wrong Python fails here, in plain words,
# and not later in pip with "Could not find a version that satisfies the requirement ...".
#
#   venv.sh VENV [PYTHON]
#
# PYTHON given (make ... PYTHON=python3.12): that one, or an error saying why not. PYTHON empty: the .venv that
# is already there if its Python is good, else the first of python3, python3.13 ... python3.11 on PATH that is.
# A .venv made by another Python is removed and made again. VENV/.python names the Python that made it; it is
# rewritten only when .venv is made, so make reinstalls the locks exactly when the Python changed.
set -euo pipefail

venv=$1
wanted=${2:-}
# The range pyproject.toml's requires-python states (>=3.11,<3.14) and the README repeats; a test keeps the three
# the same. 3.11, 3.12 and 3.13 are each tested with `make run`; 3.14 will be once the locks have its wheels.
MINIMUM=3.11
BELOW=3.14
RANGE="Python 3.11, 3.12 or 3.13"
CANDIDATES=(python3 python3.13 python3.12 python3.11)
HELP="README.md, \"The two commands\", says how to get one"

# "VERSION REALPATH" of a Python, and exit 0 only if it is in the range; nothing when it is not a Python (its
# complaint is left in $ran_stderr).
ran_stderr=
identify() {
	local out status=0
	out=$("$1" -c 'import os, sys
low, below = (tuple(map(int, v.split("."))) for v in sys.argv[1:3])
print("%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.executable))
sys.exit(not low <= sys.version_info[:2] < below)' "$MINIMUM" "$BELOW" 2>&1) || status=$?
	case "$out" in
	[0-9]*.[0-9]*.[0-9]*" "/*) echo "$out" ;;
	*) ran_stderr=$out ;;
	esac
	return $status
}

# What to type when `$1` exists but did not run as a Python: a pyenv shim for a version pyenv has not selected
# names that version's own interpreter.
not_a_python() {
	local name=$1 first
	first=$(printf '%s\n' "$ran_stderr" | head -n 1)
	local fix="name one that runs, e.g. make run PYTHON=/usr/bin/python3.11"
	if [ -n "$(command -v pyenv)" ] && [ -d "$(pyenv root 2>/dev/null)/versions" ]; then
		local installed
		installed=$(ls -d "$(pyenv root)"/versions/*/bin/"$(basename "$name")" 2>/dev/null | head -n 1)
		if [ -n "$installed" ]; then
			local version=${installed%/bin/*}
			fix="pyenv has it but has not selected it: make run PYTHON=$installed (or pyenv shell ${version##*/} first)"
		fi
	fi
	fail "PYTHON=$name did not run as a Python (${first:-no output}); $fix ($HELP)"
}

fail() {
	echo "error: $1" >&2
	exit 1
}

if [ -n "$wanted" ]; then
	command -v "$wanted" >/dev/null || fail "PYTHON=$wanted: no such program. Name a $RANGE, e.g. make run PYTHON=python3.11 ($HELP)"
	if ! found=$(identify "$wanted"); then
		[ -n "$found" ] || { identify "$wanted" >/dev/null || not_a_python "$wanted"; }
		version=${found%% *}
		fail "PYTHON=$wanted is Python $version; this demo needs $RANGE. Install one and name it, e.g. make run PYTHON=python3.11 ($HELP)"
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
		if [ -n "$found" ]; then seen+=("$candidate is ${found%% *}"); else seen+=("$candidate does not run"); fi
	done
	if [ -z "$python" ]; then
		fail "no $RANGE on PATH${seen:+ (${seen[*]})}. Install one and name it, e.g. make run PYTHON=/usr/bin/python3.11 ($HELP)"
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
