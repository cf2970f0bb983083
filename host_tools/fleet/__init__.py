"""The fleet of terminals, seen from the engineer's laptop: finding their USB ports (`ports`), the sync
link (`link`), the raw REPL (`rawrepl`), pulling taps (`sync`), flashing (`flash`, with the ESP32 image
helpers in `esp32`), diagnostics (`diag`), what a terminal is given (`provision`) and the signed fare
tables and deny lists (`tables`). Library only: nothing here prints (the CLI renders)."""
