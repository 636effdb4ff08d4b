"""LINE's impressions and clicks per campaign: which to fetch, fetching them, storing and reading them."""
