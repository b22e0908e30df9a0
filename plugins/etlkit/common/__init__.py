"""Building blocks shared by every pipeline: errors, retry policy, alerting, metrics, state, SQL."""
