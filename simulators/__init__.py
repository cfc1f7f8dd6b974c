"""Device fleets that speak only the device protocols, like real devices."""
