# An ESP32 terminal with a keypad (or a taximeter's UART): the ESP32 firmware and the key driver.
include("../manifests/esp32.py")
module("keys_esp32.py", package="firmware")
