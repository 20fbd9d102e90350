"""Meta webhook ingestion: verification, the durable inbox, typed events and catch-up."""
