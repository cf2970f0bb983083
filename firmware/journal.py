"""The offline tap journal: power-safe, on raw NOR flash, one 64-byte program per tap.

Works over any object with the Flash protocol: `size`, `SECTOR` (4096), `PAGE` (256), `read(addr, buf)`,
`program(addr, data)` (NOR: only clears bits, never crosses a page) and `erase(sector_addr)`.
On the ESP32 that is a partition adapter (firmware.hal_esp32), on the virtual board emulator/norflash.py.

    j = Journal(board.flash, key, terminal_id=7)
    seq = j.append_tap(time=t, uid=uid, kind=taprecord.KIND_CHARGE, amount=300, balance=9700)
    for rec in j.records(j.acked_seq + 1, 16): ...    # 64-byte records, oldest first
    j.ack(seq)                                         # the host has them: space can be reclaimed

Layout: the region is a ring of S sectors of 4 KB, used in physical order.

    sector  page 0   off   0  header, 32 bytes, programmed once right after the erase:
                              magic "TKJ1", sector_seq (never repeats), base_seq (seq of the first
                              tap in this sector), acked (acked_seq when the sector opened),
                              prev_mac (MAC of the last tap before this sector), 0xFFFFFFFF, crc32
                     off  32  ack area: 28 entries of 8 bytes (seq, seq ^ 0xFFFFFFFF), used in order;
                              an ack costs one 8-byte program (bits only cleared, no erase)
            pages 1..15       60 slots of 64 bytes (4 per page, never straddling a page):
                              0xFF..      free (erased)
                              version 1   a tap record (card_schema.taprecord, CRC + chained MAC)
                              0xA1        an ack slot (when the ack area is full): seq, ~seq, crc32
                              otherwise   dead: a torn write, zeroed at recovery, skipped

A tap costs one 64-byte program (plus a read-back); an erase happens only when a new sector is opened,
so the flash cost is 64 bytes programmed and 1/60 erase per tap (the physical floor is 1/64).

Invariants that make power cuts harmless:
- A sector is erased completely before its header is programmed; a sector without a valid header (torn
  erase, torn header) is free and is erased again before use.
- Slots of the open sector are written strictly in order, so the used slots are a prefix of the sector.
- A tap is complete exactly when its CRC is good; a torn slot is never a record. Its sequence number is
  reused by the next append (it was never returned, never seen by anyone).
- Only a sector whose taps are all acknowledged is erased (lazily, when the writer needs it); the open
  sector is never erased, so its header always holds the head's base_seq and the chain MAC even when
  every older sector has been reclaimed: sequence numbers and the MAC chain survive reclaim and reboot.
- The acknowledged seq is the newest of: the open sector's header, its ack entries, its ack slots, and
  (oldest seq still on flash) - 1.

Boot recovery reads the S sector headers (one 32-byte read each), follows the chain of consecutive
sector_seq back from the newest, then reads the newest sector's ack area (one 224-byte read) and scans
its slots until the first free one (at most 60 reads of 64 bytes). Bound: S + 1 + 60 reads, independent
of how full the journal is; 64 + 61 reads for the 256 KB virtual board, 256 + 61 for 1 MB.
"""

import binascii
import struct

from card_schema import taprecord
from card_schema.compat import const

_MAGIC = const(0x314A4B54)  # b"TKJ1" little endian
_HDR_FMT = "<IIII8sII"  # magic, sector_seq, base_seq, acked, prev_mac, reserved, crc
_HDR_SIZE = const(32)
_HDR_CRC_AT = const(28)
_ACK_AT = const(32)
_ACK_SIZE = const(8)
_ACK_N = const(28)  # (256 - 32) / 8 entries in page 0
_SLOT = const(64)
_SLOT0 = const(256)  # first slot: page 1
_ACK_SLOT = const(0xA1)  # byte 0 of an ack slot (tap records have version 1)
_M32 = const(0xFFFFFFFF)
_NO_BASE = const(0)  # base_seq of a sector that is not in the chain (seqs start at 1)


class JournalError(Exception):
    """The flash failed (I/O error, read-back mismatch) or the region is unusable."""


class JournalFull(JournalError):
    """No sector can be reclaimed without losing unsynced taps: sync first."""


class Journal:
    SLOTS = 60  # tap slots per 4 KB sector

    def __init__(self, flash, key, terminal_id, high_water=0.8):
        self.flash = flash
        self.key = bytes(key)
        self.terminal_id = terminal_id
        self.sector = flash.SECTOR
        if self.sector != 4096 or flash.PAGE != 256:
            raise JournalError("journal needs 4096-byte sectors and 256-byte pages")
        self.n = flash.size // self.sector
        if self.n < 2:
            raise JournalError("journal region needs at least 2 sectors")
        self.high_water_fraction = high_water
        self._buf = bytearray(_SLOT)  # the record being written (reused)
        self._rb = bytearray(_SLOT)  # read-back / scan buffer (reused)
        self._hb = bytearray(_HDR_SIZE)
        self._base = [_NO_BASE] * self.n  # base_seq of each sector in the chain
        self._cur = 0  # the open sector
        self._sseq = 0  # its sector_seq
        self._slot = 0  # next free slot in the open sector
        self._ack_n = 0  # ack entries used in the open sector
        self.head_seq = 0
        self.acked_seq = 0
        self._mac = taprecord.GENESIS_MAC
        self.formatted = False  # True when this boot found no journal and started one
        self.dead_slots = 0  # torn slots found at boot
        self.recover()

    # ---- geometry ------------------------------------------------------------------------------
    def _addr(self, sector, slot):
        return sector * self.sector + _SLOT0 + slot * _SLOT

    def _read(self, addr, buf):
        try:
            self.flash.read(addr, buf)
        except OSError as e:
            raise JournalError("flash read at 0x%x: %s" % (addr, e))
        return buf

    def _program(self, addr, data):
        try:
            self.flash.program(addr, data)
        except OSError as e:
            raise JournalError("flash program at 0x%x: %s" % (addr, e))

    # ---- boot recovery -------------------------------------------------------------------------
    def _header(self, s):
        """(sector_seq, base_seq, acked, prev_mac) of sector s, or None when it has no valid header."""
        h = self._read(s * self.sector, self._hb)
        magic, sseq, base, acked, prev, _r, crc = struct.unpack_from(_HDR_FMT, h, 0)
        if magic != _MAGIC or crc != binascii.crc32(memoryview(h)[0:_HDR_CRC_AT]) & _M32:
            return None
        if base == _NO_BASE:
            return None
        return sseq, base, acked, prev

    def recover(self):
        """Find the head, the MAC chain and the acked seq from flash (see the module doc for the bound)."""
        n = self.n
        seqs = [0] * n
        bases = [_NO_BASE] * n
        newest = -1
        hdr = None
        for s in range(n):
            h = self._header(s)
            if h is None:
                continue
            seqs[s] = h[0]
            bases[s] = h[1]
            if newest < 0 or h[0] > seqs[newest]:
                newest = s
                hdr = h
        for s in range(n):
            self._base[s] = _NO_BASE
        if hdr is None:
            self._format()
            return
        # the chain: consecutive sector_seq going back from the newest, in ring order
        self._base[newest] = bases[newest]
        s = newest
        for _ in range(n - 1):
            p = (s - 1) % n
            if bases[p] == _NO_BASE or seqs[p] != seqs[s] - 1 or bases[p] > bases[s]:
                break
            self._base[p] = bases[p]
            s = p
        oldest_base = bases[s]
        self._cur = newest
        self._sseq = hdr[0]
        head = hdr[1] - 1
        mac = hdr[3]
        acked = hdr[2]
        # ack entries (page 0), used in order
        ab = bytearray(_ACK_N * _ACK_SIZE)
        self._read(newest * self.sector + _ACK_AT, ab)
        used = 0
        for i in range(_ACK_N):
            a, b = struct.unpack_from("<II", ab, i * _ACK_SIZE)
            if a == _M32 and b == _M32:
                break
            used = i + 1
            if a ^ b == _M32 and a > acked:
                acked = a
        self._ack_n = used
        # slots of the newest sector: a prefix is used
        slot = 0
        dead = 0
        rb = self._rb
        for i in range(self.SLOTS):
            self._read(self._addr(newest, i), rb)
            if _erased(rb):
                break
            slot = i + 1
            if rb[0] == taprecord.VERSION and taprecord.crc_ok(rb):
                head = taprecord.seq_of(rb)
                mac = bytes(rb[taprecord.BODY : taprecord.BODY + 8])
            elif rb[0] == _ACK_SLOT and _ack_slot_ok(rb):
                a = struct.unpack_from("<I", rb, 4)[0]
                acked = max(acked, a)
            elif _nonzero(rb):
                # torn: zero it so it reads the same forever (half-programmed cells can drift)
                dead += 1
                try:
                    self._program(self._addr(newest, i), bytes(_SLOT))
                except JournalError:
                    pass
        self._slot = slot
        self.dead_slots = dead
        self.head_seq = head
        self._mac = mac
        acked = max(acked, oldest_base - 1)  # taps before the oldest sector were acked (reclaimed)
        acked = min(acked, head)
        self.acked_seq = acked

    def _format(self):
        """No valid header anywhere: nothing to recover, start the journal in sector 0."""
        self.formatted = True
        self._sseq = 0
        self._cur = self.n - 1  # _open() moves to the next sector: 0
        self.head_seq = 0
        self.acked_seq = 0
        self._mac = taprecord.GENESIS_MAC
        self._open((self._cur + 1) % self.n)

    def _open(self, s):
        """Erase sector s and program its header; it becomes the open sector."""
        try:
            self.flash.erase(s * self.sector)
        except OSError as e:
            raise JournalError("flash erase at 0x%x: %s" % (s * self.sector, e))
        h = self._hb
        base = self.head_seq + 1
        struct.pack_into(
            _HDR_FMT, h, 0, _MAGIC, self._sseq + 1, base, self.acked_seq, self._mac, _M32, 0
        )
        struct.pack_into("<I", h, _HDR_CRC_AT, binascii.crc32(memoryview(h)[0:_HDR_CRC_AT]) & _M32)
        self._program(s * self.sector, h)
        if self._header(s) is None:
            raise JournalError("header read-back failed in sector %d" % s)
        self._base[s] = base  # an erased (reclaimed) sector's old taps are gone
        self._cur = s
        self._sseq += 1
        self._slot = 0
        self._ack_n = 0

    def _next_free(self):
        """The sector the writer moves to next, or raise JournalFull when it holds unacked taps."""
        q = (self._cur + 1) % self.n
        if self._base[q] != _NO_BASE:
            last = (
                self._base[(q + 1) % self.n] - 1
            )  # q is the oldest; its successor is in the chain
            if last > self.acked_seq:
                raise JournalFull("journal full: %d unsynced taps" % self.unsynced)
        return q

    # ---- writing -------------------------------------------------------------------------------
    def append_tap(self, **fields):
        """Journal one tap; returns its seq once it is durable (programmed and read back)."""
        if self._slot >= self.SLOTS:
            self._open(self._next_free())
        seq = self.head_seq + 1
        buf = self._buf
        mac = taprecord.pack_into(
            buf, self._mac, self.key, seq=seq, terminal=self.terminal_id, **fields
        )
        addr = self._addr(self._cur, self._slot)
        self._write_slot(addr, buf)
        self.head_seq = seq
        self._mac = mac
        return seq

    def _write_slot(self, addr, buf):
        # the slot counts as used from here on: a failed program may have cleared bits
        self._slot += 1
        self._program(addr, buf)
        rb = self._read(addr, self._rb)
        if rb != buf:
            try:
                self.flash.program(addr, bytes(_SLOT))  # kill it: never a record
            except OSError:
                pass
            raise JournalError("read-back mismatch at 0x%x" % addr)

    def ack(self, upto_seq):
        """Persist that the host has every tap up to `upto_seq`; returns the new acked_seq."""
        if upto_seq > self.head_seq:
            raise ValueError("ack %d beyond head %d" % (upto_seq, self.head_seq))
        if upto_seq <= self.acked_seq:
            return self.acked_seq
        if self._ack_n < _ACK_N:
            addr = self._cur * self.sector + _ACK_AT + self._ack_n * _ACK_SIZE
            e = struct.pack("<II", upto_seq, upto_seq ^ _M32)
            self._ack_n += 1
            self._program(addr, e)
        elif self._slot < self.SLOTS:
            buf = self._buf
            for i in range(_SLOT):
                buf[i] = 0
            struct.pack_into("<BBBBII", buf, 0, _ACK_SLOT, 0, 0, 0, upto_seq, upto_seq ^ _M32)
            struct.pack_into("<I", buf, 60, binascii.crc32(memoryview(buf)[0:60]) & _M32)
            self._write_slot(self._addr(self._cur, self._slot), buf)
        else:
            # no room left in the open sector: the next header carries the ack
            old = self.acked_seq
            self.acked_seq = upto_seq
            try:
                self._open(self._next_free())
            except JournalError:
                self.acked_seq = old
                raise
        self.acked_seq = upto_seq
        return upto_seq

    # ---- reading -------------------------------------------------------------------------------
    @property
    def tail_seq(self):
        """Oldest seq still on flash (head_seq + 1 when empty)."""
        b = self._oldest_base()
        return b if b <= self.head_seq else self.head_seq + 1

    def _oldest_base(self):
        s = self._cur
        for _ in range(self.n - 1):
            p = (s - 1) % self.n
            if self._base[p] == _NO_BASE:
                break
            s = p
        return self._base[s]

    def records(self, from_seq, max_n):
        """Up to max_n complete taps with seq >= from_seq, oldest first, as 64-byte bytes."""
        out = []  # type: list[bytes]
        if max_n <= 0 or from_seq > self.head_seq:
            return out
        # walk the chain from the oldest sector; skip sectors that end before from_seq
        s = self._cur
        for _ in range(self.n - 1):
            p = (s - 1) % self.n
            if self._base[p] == _NO_BASE:
                break
            s = p
        rb = self._rb
        for _ in range(self.n):
            nxt = (s + 1) % self.n
            last_slot = self._slot if s == self._cur else self.SLOTS
            if s == self._cur or self._base[nxt] > from_seq:
                for i in range(last_slot):
                    self._read(self._addr(s, i), rb)
                    if rb[0] != taprecord.VERSION or not taprecord.crc_ok(rb):
                        continue
                    q = taprecord.seq_of(rb)
                    if q >= from_seq:
                        out.append(bytes(rb))
                        if len(out) >= max_n:
                            return out
            if s == self._cur:
                break
            s = nxt
        return out

    # ---- state ---------------------------------------------------------------------------------
    @property
    def unsynced(self):
        return self.head_seq - self.acked_seq

    @property
    def capacity(self):
        """Taps the ring holds when nothing is acknowledged."""
        return self.n * self.SLOTS

    @property
    def full(self):
        """True when the next append would raise JournalFull."""
        if self._slot < self.SLOTS:
            return False
        try:
            self._next_free()
        except JournalFull:
            return True
        return False

    @property
    def high_water(self):
        """True when unsynced taps fill at least `high_water` of the capacity: sync soon."""
        return self.unsynced >= self.capacity * self.high_water_fraction

    def usage(self):
        used = 0
        for s in range(self.n):
            if self._base[s] != _NO_BASE:
                used += 1
        return {
            "head_seq": self.head_seq,
            "acked_seq": self.acked_seq,
            "tail_seq": self.tail_seq,
            "unsynced": self.unsynced,
            "capacity": self.capacity,
            "sectors": self.n,
            "sectors_used": used,
            "open_sector": self._cur,
            "sector_seq": self._sseq,
            "free_slots": self.SLOTS - self._slot,
            "high_water": self.high_water,
            "full": self.full,
            "dead_slots": self.dead_slots,
        }


def _erased(b):
    for x in b:
        if x != 0xFF:
            return False
    return True


def _nonzero(b):
    for x in b:
        if x:
            return True
    return False


def _ack_slot_ok(b):
    if struct.unpack_from("<I", b, 60)[0] != binascii.crc32(memoryview(b)[0:60]) & _M32:
        return False
    a, c = struct.unpack_from("<II", b, 4)
    return a ^ c == _M32
