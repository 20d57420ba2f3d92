"""``cleanroom demo`` — placeholder replaced as soon as the crypto core lands."""
