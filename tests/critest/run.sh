#!/bin/sh
# Kubernetes' CRI validation suite (critest) through cri-dockerd on a throw-away berthd.
#
#   sh tests/critest/run.sh [critest flags...]
#
# Needs: target/debug/{berthd,berth-shim,berth-registry,berth}, the busybox tar the e2e tests
# build (target/debug/e2e-busybox.tar), gcc with a static libc, and the two Go tools built as
# tests/critest/README.md says ($CRI_DOCKERD, $CRITEST). Images come from a berth-registry on
# loopback (critest's -registry-prefix): stand-ins made from busybox, as no real registry is
# reachable. Everything it starts is stopped and removed at the end.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ws=$(cd "$here/../.." && pwd)
bin=${BERTH_BIN_DIR:-$ws/target/debug}
CRI_DOCKERD=${CRI_DOCKERD:-/tmp/gobuild/bin/cri-dockerd}
CRITEST=${CRITEST:-/tmp/gobuild/bin/critest}
port=${REGISTRY_PORT:-5077}
reg=127.0.0.1:$port
root=$(mktemp -d /tmp/bt-critest-XXXXXX)
pids=""
# critest makes System V shared memory segments on the host (ipcmk) and leaves them.
shm_before=$(ipcs -m | awk 'NR>3 {print $2}')
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    sleep 1
    DOCKER_HOST=unix://$root/b.sock docker rm -f $(DOCKER_HOST=unix://$root/b.sock docker ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    sleep 1
    nft delete table ip berth_btcri0 2>/dev/null || true
    nft delete table ip6 berth_btcri0 2>/dev/null || true
    ip link del btcri0 2>/dev/null || true
    grep " $root" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$root"
    for id in $(ipcs -m | awk 'NR>3 {print $2}'); do
        echo "$shm_before" | grep -qx "$id" || ipcrm -m "$id" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

"$bin/berth-registry" --listen "$reg" --root "$root/registry" >"$root/registry.log" 2>&1 &
pids="$pids $!"
"$bin/berthd" --data-root "$root/data" --exec-root "$root/run" -H "unix://$root/b.sock" \
    --cgroup-parent /berth-critest --bridge btcri0 --bip 10.213.250.1/24 \
    --default-address-pool base=10.214.250.0/24,size=28 >"$root/berthd.log" 2>&1 &
pids="$pids $!"
export DOCKER_HOST=unix://$root/b.sock DOCKER_CONFIG=$root/docker-config
for i in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 1 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.1; done

# Stand-in images, built here and pushed to the loopback registry under critest's paths.
docker import "$bin/e2e-busybox.tar" bb >/dev/null
ctx=$root/ctx
mkdir -p "$ctx"
gcc -static -O2 -o "$ctx/standin" "$here/standin.c"
echo 'Welcome to nginx!' >"$ctx/index.html"
# critest creates containers with an image's original name (after checking it is there) and
# pulls `<prefix>/<path>:latest` (its prefix rewrite drops the tag): each stand-in is tagged
# under its original name locally and pushed under its tag and `latest`.
build() { # path[:tag], Dockerfile body, original registry
    printf 'FROM bb\n%s\n' "$2" >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$reg/$1" "$ctx" >/dev/null 2>"$root/build.err" || { cat "$root/build.err"; exit 1; }
    docker push -q "$reg/$1" >/dev/null
    path=${1%%:*}
    docker tag "$reg/$1" "$reg/$path:latest" && docker push -q "$reg/$path:latest" >/dev/null
    case $path in
        e2e-test-images/*) docker tag "$reg/$1" "registry.k8s.io/$1" ;;
        k8s-staging-cri-tools/*) docker tag "$reg/$1" "gcr.io/$1" ;;
        *) docker tag "$reg/$1" "registry.k8s.io/$1" ;;
    esac
}
e2e=e2e-test-images
tools=k8s-staging-cri-tools
build pause:3.9 'CMD ["sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 1; done"]'
bb='COPY standin /bin/ipcs
RUN ln -f /bin/busybox /bin/ls
CMD ["sh"]'
build $e2e/busybox:1.29-2 "$bb"
build $e2e/busybox:latest "$bb"
nginx='COPY standin /usr/sbin/nginx
COPY standin /bin/ipcs
RUN mkdir -p /var/run
CMD ["/usr/sbin/nginx"]'
build $e2e/nginx:1.14-2 "$nginx"
build $tools/hostnet-nginx-amd64 "$nginx
ENV PORT=12003"
build $e2e/httpd:2.4.39-4 'COPY index.html /www/index.html
CMD echo "Command line: httpd -D FOREGROUND"; exec httpd -f -p 80 -h /www'
build $e2e/nonewprivs:1.3 'COPY standin /usr/local/bin/nnp
RUN chmod 4755 /usr/local/bin/nnp
CMD ["/usr/local/bin/nnp"]'
build $tools/test-image-latest:latest 'LABEL critest=latest'
build $tools/test-image-tag:test 'LABEL critest=tag'
build $tools/test-image-tag:all 'LABEL critest=all'
for n in 1 2 3; do build $tools/test-image-$n:latest "LABEL critest=$n"; done
build $tools/test-image-tags:1 'LABEL critest=tags'
docker tag "$reg/$tools/test-image-tags:1" "$reg/$tools/test-image-tags:2" && docker push -q "$reg/$tools/test-image-tags:2" >/dev/null
docker tag "$reg/$tools/test-image-tags:1" "$reg/$tools/test-image-tags:3" && docker push -q "$reg/$tools/test-image-tags:3" >/dev/null
build $tools/test-image-user-uid 'USER 1002'
build $tools/test-image-user-username 'RUN echo "www-data:x:33:33::/var/www:/bin/sh" >> /etc/passwd && echo "www-data:x:33:" >> /etc/group
USER www-data'
build $tools/test-image-user-uid-group 'USER 1003:1003'
build $tools/test-image-user-username-group 'RUN echo "www-data:x:33:33::/var/www:/bin/sh" >> /etc/passwd && echo "www-data:x:33:" >> /etc/group
USER www-data:www-data'
build $tools/test-image-predefined-group 'RUN echo "default-user:x:1000:1000::/home:/bin/sh" >> /etc/passwd && echo "group-defined-in-image:x:50000:default-user" >> /etc/group
USER 1000'

# RECORD=FILE: the Engine API exchanges cri-dockerd makes, through a logging relay (socat -v),
# from which tests/e2e/fixtures/cri-dockerd/ was taken.
endpoint=$root/b.sock
if [ -n "${RECORD:-}" ]; then
    socat -v UNIX-LISTEN:"$root/rec.sock",fork UNIX-CONNECT:"$root/b.sock" 2>"$RECORD" &
    pids="$pids $!"
    for i in $(seq 1 50); do [ -S "$root/rec.sock" ] && break; sleep 0.1; done
    endpoint=$root/rec.sock
fi
"$CRI_DOCKERD" --docker-endpoint "unix://$endpoint" --container-runtime-endpoint "unix://$root/cri.sock" \
    --cri-dockerd-root-directory "$root/cri" --pod-infra-container-image "$reg/pause:3.9" \
    --network-plugin="" --log-level warn >"$root/cri-dockerd.log" 2>&1 &
pids="$pids $!"
for i in $(seq 1 100); do [ -S "$root/cri.sock" ] && break; sleep 0.1; done

# The workflow's skip list (cri-dockerd v0.3.16 .github/workflows/integration.yml), plus what
# the stand-ins cannot stand in for: specs that pull an image and then look for it under its
# upstream name (registry.k8s.io/..., or pinned by an upstream digest), and MaskedPaths, whose
# `sh -c ls` must exec /bin/ls where Debian's busybox runs the applet in-process (masking itself
# is checked by berth's own e2e suite and by execing /bin/ls directly).
skip='runtime should support apparmor|runtime should support reopening container log|runtime should support execSync with timeout|runtime should support selinux|.*should support propagation.*|image with digest|public image with tag should be pulled and removed|public image without tag should be pulled and removed|image status should support all kinds of references|runtime should support MaskedPaths'
set +e
"$CRITEST" -runtime-endpoint "unix://$root/cri.sock" -registry-prefix "$reg" -ginkgo.skip="$skip" "$@"
rc=$?
[ $rc -eq 0 ] || { echo "--- cri-dockerd log (tail)"; tail -30 "$root/cri-dockerd.log"; echo "--- berthd log (tail)"; tail -30 "$root/berthd.log"; }
exit $rc
