#!/bin/sh
# Makes the NATS secrets of docker/nats.conf and swarm/configs/nats.conf with openssl:
# a CA, the servers' certificate, client certificates and passwords for the Runner and
# the Aggregate nodes, and the passwords file nats-server includes. Each output file is
# named like the Docker secret that carries it (docker/README.md, swarm/README.md).
#
#   docker/nats-secrets.sh DIR [SERVER_NAME...]
#
# SERVER_NAMEs go into the server certificate (DNS names, or IP addresses); default
# `nats localhost`, the compose file's service name. For the Swarm stack:
# `docker/nats-secrets.sh DIR nats-1 nats-2 nats-3` (the routes check these names too).
# DIR/nats_ca_key.pem signs the certificates: keep it offline, never make it a secret.
# Existing files in DIR are left alone, so a second run keeps the CA and passwords.
# DIR itself is private (0700); the files in it are readable (0644) so that a compose
# container's non-root user can read them once bind-mounted (docker/docker-compose.yml).
set -eu

dir=${1:?usage: nats-secrets.sh DIR [SERVER_NAME...]}
shift
[ $# -gt 0 ] || set -- nats localhost
command -v openssl >/dev/null || { echo "nats-secrets.sh: openssl not found" >&2; exit 1; }
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
days=825

san=""
for name in "$@"; do
  case $name in
    *[!0-9.]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;
  esac
  san="${san:+$san,}$entry"
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN EXTENSIONS: NAME_cert.pem / NAME_key.pem, signed by the CA.
sign() {
  [ -f "$1_cert.pem" ] && return 0
  key "$1_key.pem"
  openssl req -new -key "$1_key.pem" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA nats_ca.pem -CAkey nats_ca_key.pem -CAcreateserial \
    -days "$days" -extfile "$1.ext" -out "$1_cert.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

if [ ! -f nats_ca.pem ]; then
  key nats_ca_key.pem
  openssl req -x509 -new -key nats_ca_key.pem -subj "/CN=runner-nats-ca" -days "$days" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out nats_ca.pem
fi
# The servers' certificate serves clients and, on a cluster, authenticates routes both
# ways: it is a server and a client certificate.
sign nats_server "nats" "subjectAltName=$san
extendedKeyUsage=serverAuth,clientAuth"
sign runner_nats runner "extendedKeyUsage=clientAuth"
sign aggregate_nats aggregate "extendedKeyUsage=clientAuth"

password() { [ -f "$1" ] || openssl rand -hex 24 | tr -d '\n' > "$1"; }
password runner_nats_password
password aggregate_nats_password
password sys_nats_password
{
  echo "# Included by nats.conf: the users' passwords (a secret, like the files it is made of)."
  echo "RUNNER_PASSWORD: \"$(cat runner_nats_password)\""
  echo "AGGREGATE_PASSWORD: \"$(cat aggregate_nats_password)\""
  echo "SYS_PASSWORD: \"$(cat sys_nats_password)\""
} > nats_passwords.conf
chmod 644 nats_ca.pem nats_server_*.pem runner_nats_* aggregate_nats_* \
  ./*_nats_password nats_passwords.conf
chmod 600 nats_ca_key.pem
echo "NATS secrets in $(pwd)"
