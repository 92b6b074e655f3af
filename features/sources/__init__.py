"""Where datasets come from besides a billing system's export: the simulator and X12 ingestion."""
