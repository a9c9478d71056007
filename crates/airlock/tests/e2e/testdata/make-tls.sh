#!/usr/bin/env bash
# Makes the test TLS files the https-upstream tests use (committed; run again only to replace
# them): a CA, and a certificate for localhost / 127.0.0.1 it signed, valid for 100 years.
# Test-only keys: they protect nothing.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
  -subj "/CN=Airlock test CA" -keyout ca.key -out tls-ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout tls-localhost.key -out localhost.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in localhost.csr -CA tls-ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
  -extfile ext.cnf -out tls-localhost.pem 2>/dev/null
rm -f ca.key localhost.csr ext.cnf tls-ca.srl
