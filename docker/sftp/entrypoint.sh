#!/bin/sh
# Generate keys once into /keys (shared with airflow-init), then run sshd: public keys only.
set -eu
[ -f /keys/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /keys/ssh_host_ed25519_key
[ -f /keys/client_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /keys/client_ed25519_key
chmod 644 /keys/client_ed25519_key  # read by the Airflow user of the other containers (demo only)
mkdir -p /home/vinkOS/.ssh
cp /keys/client_ed25519_key.pub /home/vinkOS/.ssh/authorized_keys
chown -R vinkOS /home/vinkOS
chmod 700 /home/vinkOS/.ssh && chmod 600 /home/vinkOS/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e \
  -o HostKey=/keys/ssh_host_ed25519_key \
  -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o PermitRootLogin=no \
  -o "Subsystem=sftp internal-sftp"
