"""What operators watch: /healthz, /metrics, the staff status page, worker
heartbeats and the ids carried by log records. Every view reads the same
selectors (``selectors``), so the three never disagree."""
