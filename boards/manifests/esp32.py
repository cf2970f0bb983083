# An ESP32 terminal (MicroPython's esp32 port): the common firmware and the ESP32 hardware adapter.
# Boards with a keypad or a taximeter add firmware/keys_esp32.py in their own manifest.py.
include("common.py")
module("hal_esp32.py", package="firmware")
