"""Webhook receivers: signature, timestamp window, size and schema checks, the inbox, enqueue."""
