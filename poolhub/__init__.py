"""Pool hub: miner directory, scoring and ranking."""
