"""Where examples come from (sources, text) and their on-device transforms and batching."""
