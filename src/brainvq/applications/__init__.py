"""What a trained run is used for beyond sampling: anomaly maps and healed slices (anomaly), and
the synthetic lesions that test them (lesions)."""
