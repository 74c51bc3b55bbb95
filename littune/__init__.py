"""littune: LiT, Locked-image Text tuning."""
