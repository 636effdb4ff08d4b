"""Sending to LINE exactly once: the HTTP client and its errors, rate limiting, retry keys, the push and multicast senders and the log writer. No DAG code."""
