"""tapkit card_schema: every byte format that crosses a boundary.

Runs unchanged on MicroPython (ESP32 and the unix port) and CPython. Imports nothing of the project.
"""
