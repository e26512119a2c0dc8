#!/bin/sh
# The certificates of docker-compose.yml, made once into the `certs` volume
# and laid out as cert-manager Secrets mounted as files would be:
#   /certs/etcd/{tls.crt,tls.key,ca.crt}          etcd's server certificate
#   /certs/gateway-etcd/{tls.crt,tls.key,ca.crt}  the gateway as etcd client
# Delete the volume (docker compose down -v) to make new ones.
set -eu
cd /certs
if [ -f ca/ca.crt ]; then
    echo "certificates already made"
    exit 0
fi
command -v openssl >/dev/null || apk add --no-cache openssl >/dev/null

mkdir -p ca
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -days 3650 -subj /CN=portcullis-compose-ca -keyout ca/ca.key -out ca/ca.crt

# issue NAME CN EXTENSIONS: a P-256 key and a certificate signed by the CA.
issue() {
    mkdir -p "$1"
    printf '%b\n' "$3" >"$1/ext.cnf"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=$2" -keyout "$1/tls.key" -out "$1/tls.csr"
    openssl x509 -req -in "$1/tls.csr" -CA ca/ca.crt -CAkey ca/ca.key \
        -CAcreateserial -days 825 -extfile "$1/ext.cnf" -out "$1/tls.crt"
    cp ca/ca.crt "$1/ca.crt"
    rm "$1/tls.csr" "$1/ext.cnf"
}
# etcd's certificate also authenticates its own health check (clientAuth).
issue etcd etcd "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:etcd,DNS:localhost,IP:127.0.0.1"
issue gateway-etcd portcullis "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth"

# The gateway runs as an unprivileged user. In Kubernetes the Secret
# volume's defaultMode/fsGroup does this; the CA key stays private.
chmod 0644 etcd/tls.key gateway-etcd/tls.key
chmod 0600 ca/ca.key
echo "certificates made"
