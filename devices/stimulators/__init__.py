"""Stimulator drivers: simulated, Magstim (200², BiStim², Rapid²), MagVenture MagPro."""
