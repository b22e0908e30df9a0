#!/bin/bash
# Run by airflow-init: connections whose secrets are generated at deploy time (never committed).
set -euo pipefail
host_key=$(cut -d' ' -f1,2 /keys/ssh_host_ed25519_key.pub)
airflow connections delete sftp_visits >/dev/null 2>&1 || true
airflow connections add sftp_visits --conn-json "{\"conn_type\": \"sftp\", \"host\": \"sftp\", \"port\": 22,
  \"login\": \"vinkOS\", \"extra\": {\"key_file\": \"/keys/client_ed25519_key\", \"host_key\": \"${host_key}\"}}"
