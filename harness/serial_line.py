"""A serial line of a given byte rate between the host and a virtual board (the bench's serial
figures; not installed).

The virtual board's pty moves bytes as fast as the processes do; a real USB-UART bridge at 115,200
baud 8N1 moves 11,520 bytes/s each way (full duplex). `PacedLine(board_port)` opens the board's port
and offers a new pty (`.port`) whose bytes reach the board, and the board's reach it, no faster than
`rate` bytes/s per direction, in the order they came: what `tapkit sync` then takes is the time a
real cable would.

    with PacedLine(vb.port) as line:
        with SerialLink(line.port) as link: ...
        line.moved        # {"to_board": bytes, "to_host": bytes}
"""

import os
import select
import threading
import time
import tty

import serial

BAUD = 115200
RATE = BAUD // 10  # 8N1: 10 bits a byte


class PacedLine:
    def __init__(self, board_port, rate=RATE):
        self.rate = rate
        self.board = serial.serial_for_url(board_port, baudrate=BAUD, timeout=0)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.port = os.ttyname(self.slave)
        self.moved = {"to_board": 0, "to_host": 0}
        self.stop = False
        self.threads = [
            threading.Thread(target=self._pump, args=(d,), daemon=True)
            for d in ("to_board", "to_host")
        ]
        for t in self.threads:
            t.start()

    def _pump(self, direction):
        """Move bytes one way, as a UART does: while bytes wait, one every 1/rate s, back to back
        (a late wake-up is made up, not lost: the rate is kept from the start of a burst); a
        byte that finds the line idle goes at once."""
        src = self.master if direction == "to_board" else self.board.fileno()
        due = time.monotonic()
        idle = True
        while not self.stop:
            r, _, _ = select.select([src], [], [], 0)
            if not r:  # nothing waited while the last bytes went: the line falls idle
                idle = True
                r, _, _ = select.select([src], [], [], 0.05)
            try:
                data = os.read(src, 256) if r else b""
            except OSError:  # the other side closed
                return
            if not data:
                continue
            if idle:
                due = max(due, time.monotonic())
                idle = False
            for i in range(0, len(data), 32):  # 32 bytes: 2.8 ms at 115,200 baud
                piece = data[i : i + 32]
                due += len(piece) / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if direction == "to_board":
                    self.board.write(piece)
                else:
                    os.write(self.master, piece)
                self.moved[direction] += len(piece)

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join(2)
        self.board.close()
        os.close(self.master)
        os.close(self.slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
