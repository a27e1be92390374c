"""Protocol emulators of serial TMS stimulators on pseudo-terminals (for tests and benchmarks)."""
