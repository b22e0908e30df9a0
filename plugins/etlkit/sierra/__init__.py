"""Sierra → Signum backend item sync: settings, the /sync protocol, the changes window, retries, the loop.

Airflow-free: the hooks and the operator plug into ``sync.run_sync``.
"""
