# Sourced by the distribution benchmarks: imports busybox and builds big:3, three layers of $MB MB
# each on it: incompressible data, base64 text, and a tar of the host's real libraries (as
# compressible as typical image content). Needs DOCKER_HOST pointing at the bench berthd.
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
docker run --name l1 busybox sh -c "head -c ${MB}m /dev/urandom > /l1" >/dev/null
docker commit l1 big:1 >/dev/null
docker run --name l2 big:1 sh -c "head -c $((MB * 3 / 4))m /dev/urandom | base64 > /l2" >/dev/null
docker commit l2 big:2 >/dev/null
docker run --name l3 -v /usr/lib:/src:ro big:2 sh -c "tar -cf - -C /src . 2>/dev/null | head -c ${MB}m > /l3" >/dev/null
docker commit l3 big:3 >/dev/null
docker rm l1 l2 l3 >/dev/null
