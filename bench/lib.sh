# Sourced by the benchmarks and by the workload of the profile-guided build: the tools they
# install, the fixed backend they all proxy to, and the certificate of their TLS servers.
# shellcheck shell=bash

# Installs with apt what is missing, each argument naming a command and the Debian package
# that has it: `install_missing wrk:wrk h2load:nghttp2-client`.
install_missing() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    if ((${#need[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# Writes DIR/nginx.conf: nginx answering a tiny 200 on every path, and a 64 KiB file under
# /large/, at 127.0.0.1:PORT with WORKERS worker processes (`auto`: one per core). DIR and
# its parent (a `mktemp -d`, private) are opened to nginx's unprivileged workers.
backend_conf() { # dir port workers
    mkdir -p "$1/www/large"
    chmod a+rx "$1/.." "$1"
    head -c 65536 /dev/zero | tr '\0' x > "$1/www/large/64k"
    cat > "$1/nginx.conf" <<CONF
worker_processes $3;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$2 reuseport;
        location / { return 200 "ok\n"; }
        location /large/ { root $1/www; }
    }
}
CONF
}

# A self-signed certificate for HOST: DIR/cert.pem and DIR/key.pem.
make_cert() { # dir host
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$1/key.pem" -out "$1/cert.pem" -subj "/CN=$2" \
        -addext "subjectAltName=DNS:$2" 2>/dev/null
}

# Waits for a kamal-proxy started with KAMAL_PROXY_SOCKET to take commands.
wait_for_proxy() {
    for _ in $(seq 200); do
        [ -S "$KAMAL_PROXY_SOCKET" ] && return
        sleep 0.05
    done
    echo "kamal-proxy did not start: no $KAMAL_PROXY_SOCKET after 10 s" >&2
    return 1
}
