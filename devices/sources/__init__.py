"""Data-source drivers that publish LSL streams (BrainFlow boards, ...)."""
