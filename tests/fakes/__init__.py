"""Stand-ins for outside services that speak their documented wire formats on loopback."""
