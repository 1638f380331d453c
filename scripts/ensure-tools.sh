# Sourced by scripts/specdyn and scripts/test: make sure the tools specdyn needs exist.

# pip_install PKG…: install Python packages for the current python3, trying the user site when
# the system forbids global installs (PEP 668).
pip_install() {
    python3 -m pip install --quiet "$@" >&2 2>/dev/null \
        || python3 -m pip install --quiet --user "$@" >&2 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages "$@" >&2 2>/dev/null
}

# HDF5 is compiled from source (hdf5-metno, feature "static"), which needs cmake. If it is
# missing, install it from PyPI (a self-contained binary wheel) or apt, and put it on PATH.
ensure_cmake() {
    if command -v cmake >/dev/null 2>&1; then
        return 0
    fi
    echo "installing cmake (needed once to build HDF5)…" >&2
    if command -v python3 >/dev/null 2>&1 && pip_install cmake; then
        local bin
        bin="$(python3 -c 'import cmake, os; print(os.path.join(os.path.dirname(cmake.__file__), "data", "bin"))' 2>/dev/null)"
        export PATH="$bin:$HOME/.local/bin:$PATH"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -qq cmake >&2
    fi
    command -v cmake >/dev/null 2>&1 || {
        echo "error: cmake is needed to build HDF5 and could not be installed. Fix: install cmake (e.g. apt-get install cmake) and run this again." >&2
        return 1
    }
}
