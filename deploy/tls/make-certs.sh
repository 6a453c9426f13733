#!/bin/sh
# Certificates for docker-compose.yml's TLS, made once into the folder given (a volume):
# a CA of the stack's own, each Kafka node's key and certificate in one PEM file (Kafka's PEM
# keystore: the key in PKCS#8, then the certificate), and PostgreSQL's key and certificate.
# Clients trust ca.pem (DUNNING_BROKER_SSL_CA, sslrootcert). Operators with a CA of their own
# put its files there instead; nothing is made where ca.pem already exists.
set -eu
out=${1:?usage: make-certs.sh FOLDER}
mkdir -p "$out"
cd "$out"
[ -e ca.pem ] && { echo "certificates already in $out"; exit 0; }
days=825
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=dunning stack CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
issue() {  # name, then its DNS names
  name=$1; shift
  sans=$(printf 'DNS:%s,' "$@"); sans=${sans%,}
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$1" -keyout "$name.key.tmp" \
    -out "$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$name.key.tmp" -out "$name.key"
  rm -f "$name.key.tmp" "$name.csr" "$name.ext"
}
for n in 1 2 3; do
  issue "kafka-$n" "kafka-$n" localhost
  cat "kafka-$n.key" "kafka-$n.crt" > "kafka-$n.pem"
done
issue postgres postgres localhost
rm -f ca.key ca.srl  # nothing more is signed here
chmod 0644 ca.pem ./*.crt
chmod 0600 ./*.key ./*.pem
chmod 0644 ca.pem
# PostgreSQL (uid 999 in its image) and Kafka (uid 1000 in apache/kafka) read their own keys.
chown 999:999 postgres.key postgres.crt 2>/dev/null || true
chown 1000:1000 kafka-*.pem 2>/dev/null || true
echo "certificates made in $out"
