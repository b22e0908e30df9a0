"""``[core] hostname_callable`` of ``make stack``: each Celery worker reports the host it stands for.

Two workers on one machine would otherwise both report the machine's name, and the task instances
would not say which one ran them. Kept apart from ``dev.stack`` so every Airflow process imports little.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("ETLKIT_STACK_HOSTNAME") or socket.getfqdn()
