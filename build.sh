#!/usr/bin/env bash
# pyflowmesh: one entry point to build, serve and test. See docs/build-notes.md.
#
#   ./build.sh build              .venv with pyodide-lock, wheel into dist/, browser runtime into web/vendor/,
#                                 wheel into web/wheels/
#   ./build.sh demo [--port N]    build if needed, serve the demo (web/demo/) at http://127.0.0.1:8000 (or $PORT)
#   ./build.sh test [--level L]... [pytest args]
#                                 venv + deps + Chromium + build, then the test levels
#   ./build.sh bench [options]    venv (test deps + matplotlib) + Chromium + build, then the benchmarks
#   ./build.sh bench --soak [options]  the same setup, then the soak (memory over hours of churn)
#   ./build.sh help
set -euo pipefail

# ---- pinned versions (change here only) -----------------------------------
PYODIDE_VERSION="314.0.7"          # npm: pyodide (Python 3.14.2)
PYSCRIPT_VERSION="0.7.31"          # npm: @pyscript/core
MICROPIP_VERSION="0.11.1"          # must equal what pyodide-lock.json lists
PACKAGING_VERSION="26.1"           # must equal what pyodide-lock.json lists
# Lock packages made available offline inside Pyodide, with their lock dependencies:
# micropip (PyScript's `packages`), pytest + tblib (pytest-pyodide's run_in_pyodide
# loads them when the lock lists them).
PYODIDE_LOCK_PACKAGES=("micropip==${MICROPIP_VERSION}" "packaging==${PACKAGING_VERSION}" "pytest" "tblib")
# Build time, in .venv: reads and writes web/vendor/pyodide/pyodide-lock.json (tools/vendor_pyodide.py).
# 0.2 is the first to read Pyodide 314's lock; it declares Python >= 3.12 (see ensure_build_venv).
PYODIDE_LOCK_SPEC="pyodide-lock[wheel]==0.2.1"
PYTEST_SPEC="pytest>=8.4,<9"       # pytest-pyodide 0.59.2 breaks under pytest 9
PYTEST_PYODIDE_SPEC="pytest-pyodide==0.59.2"
PLAYWRIGHT_SPEC="playwright>=1.65,<1.66"
WEBSOCKETS_SPEC="websockets>=14,<18"  # the test server's WebSocket endpoint (demo, tests, bench)
HYPOTHESIS_SPEC="hypothesis>=6.100,<7"
MATPLOTLIB_SPEC="matplotlib>=3.8,<4"  # bench only: the plot
# bench only: the anchor of the failover figures, bundled for web/lab/bc.html with esbuild.
BROADCAST_CHANNEL_SPEC="broadcast-channel@7.4.0"
ESBUILD_SPEC="esbuild@0.28.2"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
# ---------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
WEB="$ROOT/web"
PYODIDE_DIR="$WEB/vendor/pyodide"
PYSCRIPT_DIR="$WEB/vendor/pyscript"
WHEELS_DIR="$WEB/wheels"
ARTIFACTS="$ROOT/test-artifacts"
export PIP_DISABLE_PIP_VERSION_CHECK=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
    cat <<EOF
usage: ./build.sh <command> [options]

commands:
  build                 create .venv with the build's tool (pyodide-lock) if missing, build the wheel
                        into dist/ and assemble the offline browser runtime:
                        web/vendor/pyodide/  (npm pyodide@${PYODIDE_VERSION} + PyPI wheels in its lock)
                        web/vendor/pyscript/ (npm @pyscript/core@${PYSCRIPT_VERSION}, dist/)
                        web/wheels/          (the browser wheel: bytecode for that Pyodide, without the
                                             simulator; manifest.json, pyscript.json)
  demo [--port N]       build if needed, then serve the site in web/ with tools/server.py: the demo
                        (web/demo/) at http://127.0.0.1:N/ (default \$PORT or 8000), the lab at /lab/
  test [--level L]... [pytest args]
                        create .venv, install the test tools and Chromium if missing, build, run
                        the levels: cpython (tests/), pyodide (tests/pyodide/, pytest-pyodide),
                        browser (tests/browser/, Playwright tabs). Default: all three.
                        Other arguments go to every pytest run (e.g. -x, -k NAME, -v).
  bench [options]       like test: .venv (plus matplotlib), Chromium, build; then measure what the mesh
                        saves and costs against the same page without it (real Chromium tabs) and the
                        protocol at scale (simulator). Prints the figures, writes bench-results/results.json,
                        docs/benchmarks.png and docs/benchmarks.md. Never fails on a time.
                        Options: --quick (fewer tabs and trials), --only browser|sim, --no-docs
                        (see: .venv/bin/python -m bench.run --help)
  bench --soak [options]
                        the soak instead: memory of tabs that stay open while keys and tabs churn, over
                        MemoryHub, for 24 simulated hours and for 10 minutes in 4 Chromium tabs; writes
                        bench-results/soak.json, docs/soak.png and the soak section of docs/benchmarks.md.
                        Options: --quick, --only hub|sim|browser, --baseline REV, --no-docs
                        (see: .venv/bin/python -m bench.run --soak --help)
  help                  this text

environment: PORT (demo), PYTHON (default python3), CHROMIUM (default /usr/bin/chromium)
EOF
}

# ---- build -----------------------------------------------------------------

# fetch_npm SPEC TARBALL SUBDIR DEST: extract package/SUBDIR of an npm tarball into DEST,
# unless DEST already holds that exact SPEC (stamp file).
fetch_npm() {
    local spec="$1" tarball="$2" subdir="$3" dest="$4"
    local stamp="$dest/.npm-package"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$spec" ]]; then
        log "$spec already in ${dest#"$ROOT"/}"
        return
    fi
    mkdir -p "$CACHE/npm"
    if [[ ! -s "$CACHE/npm/$tarball" ]]; then
        log "npm pack $spec"
        (cd "$CACHE/npm" && npm pack --silent "$spec" >/dev/null)
        [[ -s "$CACHE/npm/$tarball" ]] || die "npm pack $spec did not produce $tarball"
    fi
    local tmp
    rm -rf "$CACHE"/unpack.*
    tmp="$(mktemp -d "$CACHE/unpack.XXXXXX")"
    tar -xzf "$CACHE/npm/$tarball" -C "$tmp"
    local src="$tmp/package"
    [[ "$subdir" == "." ]] || src="$src/$subdir"
    [[ -d "$src" ]] || die "$tarball has no package/$subdir"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    mv "$src" "$dest"
    rm -rf "$tmp"
    echo "$spec" >"$dest/.npm-package"
    log "extracted $spec into ${dest#"$ROOT"/}"
}

build_wheel() {
    log "building the wheel (hatchling)"
    mkdir -p dist
    rm -f dist/pyflowmesh-*.whl
    "$PYTHON" -m pip wheel --quiet --no-deps --no-cache-dir . -w dist
    WHEEL="$(ls dist/pyflowmesh-*-py3-none-any.whl)"
    [[ -f "$WHEEL" ]] || die "no wheel in dist/"
    log "built $WHEEL"
}

do_build() {
    local t0
    t0="$(now)"
    command -v npm >/dev/null || die "npm is required (the Pyodide and PyScript runtimes come from the npm registry)"
    build_wheel
    fetch_npm "pyodide@${PYODIDE_VERSION}" "pyodide-${PYODIDE_VERSION}.tgz" "." "$PYODIDE_DIR"
    fetch_npm "@pyscript/core@${PYSCRIPT_VERSION}" "pyscript-core-${PYSCRIPT_VERSION}.tgz" "dist" "$PYSCRIPT_DIR"
    # The browser's wheel: bytecode compiled by the vendored Pyodide (in Node), without the simulator.
    log "compiling the browser wheel with Pyodide ${PYODIDE_VERSION} (node)"
    BROWSER_WHEEL="$("$PYTHON" tools/browser_wheel.py "$WHEEL" "$CACHE/browser-wheel" --pyodide "$PYODIDE_DIR")"
    log "built $BROWSER_WHEEL ($(stat -c %s "$BROWSER_WHEEL") bytes)"
    ensure_build_venv
    "$VENV/bin/python" tools/vendor_pyodide.py "$PYODIDE_DIR" "${PYODIDE_LOCK_PACKAGES[@]}" --add-wheel "$BROWSER_WHEEL"
    "$PYTHON" tools/web_wheels.py "$BROWSER_WHEEL" "$WHEELS_DIR" --pyodide "$PYODIDE_VERSION" --pyscript "$PYSCRIPT_VERSION"
    log "build done in $(elapsed "$t0") s"
}

# ---- test environment --------------------------------------------------------

ensure_chromium() {
    if [[ -x "$CHROMIUM" ]]; then
        return
    fi
    [[ "$CHROMIUM" == /usr/bin/chromium ]] || die "CHROMIUM=$CHROMIUM does not exist"
    log "installing Debian's chromium (not found at $CHROMIUM)"
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    # Lock::Timeout waits for an apt/dpkg that is already running instead of failing.
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 update -qq
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 install -y -qq chromium
    [[ -x "$CHROMIUM" ]] || die "apt-get install chromium did not provide $CHROMIUM"
}

make_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
}

# The stamp .venv/.pyflowmesh-deps[-NAME] holds the SPECs last installed under NAME, and the
# sha256 of pyproject.toml (so a changed package re-installs).
venv_stamp() { echo "$VENV/.pyflowmesh-deps${1:+-$1}"; }
venv_want() { printf '%s\n' "$@"; sha256sum pyproject.toml | cut -d' ' -f1; }

# venv_current NAME MODULE SPEC...: true if the stamp NAME lists these SPECs and MODULE imports.
venv_current() {
    local name="$1" module="$2" stamp
    shift 2
    stamp="$(venv_stamp "$name")"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$(venv_want "$@")" ]] \
        && "$VENV/bin/python" -c "import $module" 2>/dev/null; then
        log "${name:-test} dependencies already installed in .venv"
        return 0
    fi
    return 1
}

# venv_install NAME SPEC...: pip-install SPECs into .venv and record them in the stamp NAME.
venv_install() {
    local name="$1"
    shift
    log "installing ${name:-test} dependencies into .venv: $*"
    "$VENV/bin/python" -m pip install --quiet "$@"
    venv_want "$@" >"$(venv_stamp "$name")"
}

# ensure_build_venv: .venv with what the build's tools import (pyodide-lock). build and demo need
# only this; test and bench add their tools to the same .venv.
ensure_build_venv() {
    make_venv
    venv_current build "pyodide_lock, websockets" "$PYODIDE_LOCK_SPEC" "$WEBSOCKETS_SPEC" && return
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
        # pyodide-lock 0.2 declares Python >= 3.12. On 3.11, 0.1.2 (its last release for 3.11)
        # cannot read Pyodide 314's lock (it requires info.version and refuses the "tool" field),
        # while 0.2.1 reads and writes it byte for byte there too (docs/build-notes.md). So on
        # 3.11 it goes in past its Requires-Python, alone; the install below adds its dependencies.
        "$VENV/bin/python" -m pip install --quiet --no-deps --ignore-requires-python "$PYODIDE_LOCK_SPEC"
    fi
    venv_install build "$PYODIDE_LOCK_SPEC" "$WEBSOCKETS_SPEC"
}

# ensure_venv: .venv with the test tools and pyflowmesh (editable). test and bench share it;
# bench adds its own extras with venv_install bench ...
ensure_venv() {
    local specs=("$PYTEST_SPEC" "$PYTEST_PYODIDE_SPEC" "$PLAYWRIGHT_SPEC" "$HYPOTHESIS_SPEC" "$WEBSOCKETS_SPEC" -e .)
    make_venv
    # pyflowmesh has no dependencies, so "-e ." installs just itself, editable.
    venv_current "" pyflowmesh "${specs[@]}" || venv_install "" "${specs[@]}"
}

# ---- test levels ---------------------------------------------------------------

SUMMARY=()
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
ANY_FAILED=0

# run_level NAME PYTEST_ARGS...: one pytest run, tolerant of "no tests collected" (exit 5).
run_level() {
    local name="$1"
    shift
    local junit="$ARTIFACTS/junit-$name.xml" t0 rc counts
    mkdir -p "$ARTIFACTS"
    rm -f "$junit"
    log "level $name: pytest $*"
    t0="$(now)"
    set +e
    "$VENV/bin/python" -m pytest --junitxml="$junit" -o junit_family=xunit1 "$@"
    rc=$?
    set -e
    counts="$("$PYTHON" tools/junit_counts.py "$junit")"
    local passed failed skipped verdict
    read -r passed failed skipped <<<"$counts"
    case "$rc" in
        0) verdict="ok" ;;
        5) verdict="ok (no tests collected)" ;;
        *) verdict="FAILED (pytest exit $rc)"; ANY_FAILED=1
           [[ "$failed" == 0 ]] && failed=1 ;;  # e.g. an error before any test ran
    esac
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + skipped))
    SUMMARY+=("$(printf '%-8s %s passed, %s failed, %s skipped in %s s: %s' "$name" "$passed" "$failed" "$skipped" "$(elapsed "$t0")" "$verdict")")
}

do_test() {
    local levels=() extra=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --level) [[ $# -ge 2 ]] || die "--level needs cpython, pyodide or browser"; levels+=("$2"); shift 2 ;;
            --level=*) levels+=("${1#--level=}"); shift ;;
            *) extra+=("$1"); shift ;;
        esac
    done
    [[ ${#levels[@]} -gt 0 ]] || levels=(cpython pyodide browser)
    local t0
    t0="$(now)"
    ensure_chromium
    ensure_venv
    do_build
    # pytest-pyodide registers itself as a plugin in every pytest run of the venv; only the
    # pyodide level wants it (its --runtime/--dist-dir options and its collection hooks).
    local no_pyodide=(-p no:pytest_pyodide -p no:pytest_pyodide_hook)
    local level
    for level in "${levels[@]}"; do
        case "$level" in
            cpython) run_level cpython "${no_pyodide[@]}" tests --ignore=tests/pyodide --ignore=tests/browser ${extra[@]+"${extra[@]}"} ;;
            pyodide) run_level pyodide tests/pyodide --dist-dir="$PYODIDE_DIR" --runtime=chrome --runner=playwright ${extra[@]+"${extra[@]}"} ;;
            browser) run_level browser "${no_pyodide[@]}" tests/browser ${extra[@]+"${extra[@]}"} ;;
            *) die "unknown level: $level (cpython, pyodide, browser)" ;;
        esac
    done
    echo
    echo "==================== pyflowmesh test summary ===================="
    printf '%s\n' "${SUMMARY[@]}"
    echo "(artifacts of failed browser tests: test-artifacts/<test>/; whole run $(elapsed "$t0") s)"
    echo "TOTAL: ${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed, ${TOTAL_SKIPPED} skipped"
    return "$ANY_FAILED"
}

# ---- bench -----------------------------------------------------------------------

# bundle_broadcast_channel: npm's broadcast-channel, bundled by esbuild (both from npm, installed
# under .cache/bench-npm/) into web/vendor/broadcast-channel/bc.js for web/lab/bc.html, unless
# the stamp there names the same versions and the same entry (bench/js/bc_entry.mjs).
bundle_broadcast_channel() {
    local dest="$WEB/vendor/broadcast-channel" work="$CACHE/bench-npm" want
    want="$BROADCAST_CHANNEL_SPEC $ESBUILD_SPEC $(sha256sum bench/js/bc_entry.mjs | cut -d' ' -f1)"
    if [[ -s "$dest/bc.js" && -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$want" ]]; then
        log "$BROADCAST_CHANNEL_SPEC already bundled in ${dest#"$ROOT"/}"
        return
    fi
    command -v npm >/dev/null || die "npm is required (the bench bundles broadcast-channel from the npm registry)"
    mkdir -p "$work" "$dest"
    [[ -f "$work/package.json" ]] || echo '{"name": "pyflowmesh-bench-npm", "private": true}' >"$work/package.json"
    if [[ ! -x "$work/node_modules/.bin/esbuild" || ! -f "$work/node_modules/broadcast-channel/package.json" \
          || "$(cat "$work/.installed" 2>/dev/null)" != "$BROADCAST_CHANNEL_SPEC $ESBUILD_SPEC" ]]; then
        log "npm install $BROADCAST_CHANNEL_SPEC $ESBUILD_SPEC (into ${work#"$ROOT"/})"
        (cd "$work" && npm install --silent --save-exact "$BROADCAST_CHANNEL_SPEC" "$ESBUILD_SPEC")
        echo "$BROADCAST_CHANNEL_SPEC $ESBUILD_SPEC" >"$work/.installed"
    fi
    cp bench/js/bc_entry.mjs "$work/bc_entry.mjs"
    (cd "$work" && node_modules/.bin/esbuild bc_entry.mjs --bundle --format=iife --platform=browser \
        --target=es2020 --log-level=warning --outfile="$dest/bc.js")
    echo "$want" >"$dest/.stamp"
    log "bundled $BROADCAST_CHANNEL_SPEC into ${dest#"$ROOT"/}/bc.js ($(wc -c <"$dest/bc.js") bytes)"
}

do_bench() {
    local t0
    t0="$(now)"
    ensure_chromium
    ensure_venv
    venv_current bench matplotlib "$MATPLOTLIB_SPEC" || venv_install bench "$MATPLOTLIB_SPEC"
    do_build
    bundle_broadcast_channel
    # --soak (anywhere in the options) makes bench.run run bench.soak instead.
    log "bench: python -m bench.run $*"
    "$VENV/bin/python" -m bench.run "$@"
    log "bench done in $(elapsed "$t0") s (build and setup included)"
}

# ---- demo ----------------------------------------------------------------------

do_demo() {
    local port="${PORT:-8000}"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --port) [[ $# -ge 2 ]] || die "--port needs a number"; port="$2"; shift 2 ;;
            --port=*) port="${1#--port=}"; shift ;;
            *) die "demo: unknown option $1" ;;
        esac
    done
    do_build
    log "demo at http://127.0.0.1:${port}/ (lab: /lab/, smoke page: /lab/smoke.html; API: /api/data, /api/stats;"
    log "live feed: /api/stream (SSE), its WebSocket in /api/stream/stats); Ctrl-C stops it"
    exec "$VENV/bin/python" tools/server.py --host 127.0.0.1 --port "$port"  # .venv: it has websockets
}

cmd="${1:-help}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    build) do_build ;;
    demo) do_demo "$@" ;;
    test) do_test "$@" ;;
    bench) do_bench "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
esac
