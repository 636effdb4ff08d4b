"""The delivery log: one row per (campaign, run, profile), its schema, connections and queries."""
