#!/usr/bin/env bash
# Idempotent set-up of everything moorage and its tests need on a Debian host (run as root):
# Debian's Docker engine and registry, a running dockerd, a local registry on 127.0.0.1:5000
# holding the test image (busybox-static, `docker import`ed: nothing is pulled from the internet),
# a second registry with basic auth on 127.0.0.1:5001 holding it too (user moorage-test, password
# in $WORK/auth-registry/password), the project's virtualenv in .venv, and the tools the tests run besides
# Python (redocly's OpenAPI linter, and playwright-core to drive Debian's Chromium, in .venv/node).
#
#   scripts/setup.sh            everything
#   scripts/setup.sh engine     packages, engine, registries, image and the tools (what the engine tests call)
#   scripts/setup.sh venv       only the virtualenv (all the unit tests need: .ci/run runs them before the engine)
#
# Each step checks first and does nothing when its part is already there, so calling it again is cheap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${MOORAGE_TEST_STATE:-/var/lib/moorage-test}
REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_USER=moorage-test
TEST_IMAGE=$REGISTRY/moorage-test/busybox:latest
# systemd: systemd-analyze, to check the unit; python3-seccomp: its sandbox, rebuilt where systemd is not PID 1;
# nginx: the proxy that tests/engine/test_proxy_streams.py runs in front of moorage (started by the test, not as a service);
# chromium: the headless browser of tests/browser.py (Debian's build: nothing may download one of its own);
# prometheus: the server that tests/engine/test_prometheus_dashboards.py runs against moorage (started by the test).
APT_PACKAGES=(docker.io docker-registry busybox-static curl apache2-utils systemd python3-seccomp wrk nginx chromium
    prometheus)
# The OpenAPI linter that tests/test_openapi_contract.py runs (redocly's recommended rules), from npm.
REDOCLY_VERSION=2.77.0
# What drives that chromium (tests/browser.py): only the driver, no browser download. Playwright speaks the
# DevTools protocol of the Chromium it bundles, so this is the release whose Chromium has the major that Debian
# ships (`chromium --version`: 156 in bookworm-security; 1.64 bundles 156): raise both together.
PLAYWRIGHT_VERSION=1.64.1

log() { printf 'setup: %s\n' "$*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

engine() {
    docker info >/dev/null 2>&1 && return
    # A dockerd that is still stopping holds its pid file: let it finish, or a new one refuses to start.
    if pgrep -x dockerd >/dev/null; then
        wait_for 60 "the engine to answer or to finish stopping" sh -c 'docker info || ! pgrep -x dockerd'
        docker info >/dev/null 2>&1 && return
    fi
    rm -f /var/run/docker.pid
    log "starting dockerd (log: $WORK/dockerd.log)"
    mkdir -p "$WORK"
    # setsid + closed stdio: the engine must outlive this script and never hold a caller's pipes open.
    setsid dockerd >"$WORK/dockerd.log" 2>&1 </dev/null &
    wait_for 60 "the Docker engine" docker info
}

start_registry() {  # start_registry DIR ADDR [EXTRA-CONFIG]
    local dir=$1 addr=$2
    log "starting docker-registry on $addr"
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
${3:-}
EOF
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    # Any HTTP answer will do: the one with auth answers 401 until logged in.
    wait_for 30 "the registry on $addr" curl -sS -o /dev/null "http://$addr/v2/"
}

registries() {
    curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 || start_registry "$WORK/registry" "$REGISTRY"
    local auth=$WORK/auth-registry
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$AUTH_REGISTRY/v2/")" != 401 ]; then
        mkdir -p "$auth"
        [ -s "$auth/password" ] || (umask 077 && head -c 18 /dev/urandom | base64 >"$auth/password")
        htpasswd -Bbn "$AUTH_USER" "$(cat "$auth/password")" >"$auth/htpasswd"
        start_registry "$auth" "$AUTH_REGISTRY" "auth:
  htpasswd:
    realm: moorage-test
    path: $auth/htpasswd"
    fi
}

image() {
    if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
        log "building $TEST_IMAGE from busybox-static"
        local rootfs
        rootfs=$(mktemp -d)
        mkdir -p "$rootfs"/{bin,etc,tmp,www}
        cp /bin/busybox "$rootfs/bin/busybox"
        for applet in $("$rootfs/bin/busybox" --list); do
            [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
        done
        echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
        echo 'nobody:x:65534:65534:nobody:/:/bin/false' >>"$rootfs/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
        echo 'moorage test page' >"$rootfs/www/index.html"
        tar -C "$rootfs" -c . | docker import \
            -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' -m 'moorage test image' - "$TEST_IMAGE" >/dev/null
        rm -rf "$rootfs"
    fi
    if ! curl -fsS "http://$REGISTRY/v2/moorage-test/busybox/tags/list" 2>/dev/null | grep -q '"latest"'; then
        log "pushing $TEST_IMAGE"
        docker push -q "$TEST_IMAGE" >/dev/null
    fi
    local password private=$AUTH_REGISTRY/moorage-test/private:latest
    password=$(cat "$WORK/auth-registry/password")
    if ! curl -fsS -u "$AUTH_USER:$password" "http://$AUTH_REGISTRY/v2/moorage-test/private/tags/list" 2>/dev/null |
        grep -q '"latest"'; then
        log "pushing $private"
        docker tag "$TEST_IMAGE" "$private"
        docker login -u "$AUTH_USER" --password-stdin "$AUTH_REGISTRY" <<<"$password" >/dev/null
        docker push -q "$private" >/dev/null
        docker logout "$AUTH_REGISTRY" >/dev/null
        docker rmi "$private" >/dev/null
    fi
}

venv() {
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        log "creating $ROOT/.venv"
        python3 -m venv "$ROOT/.venv"
    fi
    log "installing moorage and its test dependencies into .venv"
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
}

tools() {
    local prefix=$ROOT/.venv/node wanted=()
    [ "$("$prefix/node_modules/.bin/redocly" --version 2>/dev/null)" = "$REDOCLY_VERSION" ] ||
        wanted+=("@redocly/cli@$REDOCLY_VERSION")
    # Its package.json, not its CLI: node reads it in a few milliseconds, where the CLI loads the whole driver.
    [ "$(node -p "require('$prefix/node_modules/playwright-core/package.json').version" 2>/dev/null)" = \
        "$PLAYWRIGHT_VERSION" ] || wanted+=("playwright-core@$PLAYWRIGHT_VERSION")
    ((${#wanted[@]} == 0)) && return
    if ! command -v npm >/dev/null; then
        log "installing nodejs and npm"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    log "installing ${wanted[*]} into $prefix"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing today; should a release start to, it must
    # not (the network has none to give), and the tests launch /usr/bin/chromium anyway.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$prefix" --no-audit --no-fund --silent "${wanted[@]}" >/dev/null
}

case "${1:-all}" in
    all) packages; engine; registries; image; venv; tools ;;
    engine) packages; engine; registries; image; tools ;;
    venv) venv ;;
    *) echo "usage: $0 [all|engine|venv]" >&2; exit 64 ;;
esac
