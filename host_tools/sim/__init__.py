"""The simulated fleet: virtual boards and emulated cards (`virtual`) and the demo as data (`demo`)."""
