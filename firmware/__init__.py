"""tapkit terminal firmware (MicroPython: ESP32, and the unix port as the virtual board)."""

VERSION = "0.1.0"
