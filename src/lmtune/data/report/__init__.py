"""The data report: counts, rejects by reason, token lengths, label balance (terminal, JSON, HTML)."""
