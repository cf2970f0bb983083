"""The offline tap journal: power-safe, on raw NOR flash, one 64-byte program per tap.

Works over any object with the Flash protocol: `size`, `SECTOR` (4096), `PAGE` (256), `read(addr, buf)`,
`program(addr, data)` (NOR: only clears bits, never crosses a page) and `erase(sector_addr)`.
On the ESP32 that is a partition adapter (firmware.hal_esp32), on the virtual board emulator/norflash.py.

    j = Journal(board.flash, key, terminal_id=7)
    seq = j.append_tap(time=t, uid=uid, kind=taprecord.KIND_CHARGE, amount=300, balance=9700)
    for rec in j.records(j.acked_seq + 1, 16): ...    # 64-byte records, oldest first
    j.ack(seq)                                         # the host has them: space can be reclaimed
    j.head_seq, j.acked_seq, j.tail_seq, j.unsynced, j.capacity, j.full, j.dead_slots
    j.room, j.fill, j.high_water      # slots left, percent full, above the high-water mark (0.8)

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
  (oldest seq still on flash) - 1. An ack is durable when ack() returns (`acked_durable`), except on a
  full ring whose open sector has no entry or slot left and when the ack frees no sector: then it is
  held in RAM until one does (the header of the next sector carries it). Losing it in a power cut only
  makes the host receive records again, which it stores idempotently by (terminal, seq).
- Full: the open sector is full and the next one still holds unacknowledged taps. append_tap() then
  raises JournalFull and writes nothing; the terminal checks `full` before it debits a card, so a
  paid tap is refused, never lost. `high_water` turns True when more than the given fraction
  (default 0.8) of the slots cannot be written without a sync: the terminal asks for one.

Boot recovery reads the S sector headers (one 32-byte read each), follows the chain of consecutive
sector_seq back from the newest, then reads the newest sector's ack area (one 224-byte read) and all
its 60 slots (a slot a failed program left erased may sit between used ones, so the scan does not stop
at the first free one). Bound: exactly S + 1 + 60 reads (S * 32 + 224 + 3840 bytes), however full the
journal is, plus one program per torn slot found; 125 reads (6 KB) for the 256 KB virtual board, 317
(12 KB) for 1 MB. Measured by `make bench` (bench/journal.py).

Cards: what the terminal remembers of the cards it saw recently: UID -> the card's counter and balance,
and a charge whose commit the terminal could not confirm (pending). Bounded and power-safe: every
fact in it is a journal record (durable before the card commits), so boot rebuilds it from the
newest records and RAM holds it afterwards; nothing of it is written anywhere else.

    mem = Cards(32)                       # at boot, firmware.app replays the newest 240 records
    i = mem.find(uid)                     # entry index, or -1
    uid, flags, counter, balance, seq, pseq, ptime = mem.get(i)
    mem.update(seq, kind, result, uid, counter, amount, balance, time)   # each journal record
    mem.update(seq, 0, 0, uid, counter, 0, balance, 0)   # a card's state read, nothing journalled
    mem.check(i, counter, balance)        # False: the card went back against what was seen

Flags: PENDING (the newest charge or refund of the card, journalled before CommitTransaction, has
no CONFIRM or VOID yet; `pseq`/`ptime` are its seq and time, `counter`/`balance` what the card holds
if it committed), UNCERTAIN (the card may still be one counter behind: a change not known to have
committed), BALANCE (the balance is known).

Used for (firmware/app.py): resolving a pending charge when its card comes back (from the card's own
trip log), and refusing a card whose state goes back against what this terminal saw (a restored card
image, a clone): counter lower, or the same counter with another balance.

Bounds: `n` entries of 28 bytes (32: 896 bytes). A new card takes the entry seen longest ago that has
no pending charge; only when every entry is pending does the oldest pending one go (its charge stays
unconfirmed in the journal: the back office resolves it from the card's later transactions). The
boot rebuild replays the newest 240 records, oldest first (one 64-byte read each).
"""

import binascii
import struct

from card_schema import taprecord
from card_schema.compat import const

_MAGIC = const(0x314A4B54)  # b"TKJ1" little endian
# header "<IIII8sII": magic, sector_seq, base_seq, acked, prev_mac, reserved, crc
_HDR_SIZE = const(32)
_HDR_CRC_AT = const(28)
_ACK_AT = const(32)
_ACK_SIZE = const(8)
_ACK_N = const(28)  # (256 - 32) / 8 entries in page 0
_SECTOR = const(4096)
_SLOT = const(64)  # = card_schema.taprecord.SIZE: one tap record per slot
_SLOTS = const(60)  # tap slots per sector
_SLOT0 = const(256)  # first slot: page 1
_ACK_SLOT = const(0xA1)  # byte 0 of an ack slot (tap records have version 1)
_M32 = const(0xFFFFFFFF)
_NO_BASE = const(0)  # base_seq of a sector that is not in the chain (seqs start at 1)
# Cards (below): flags, entry layout, and the record codes it learns from
_PENDING = const(1)
_UNCERTAIN = const(2)
_BALANCE = const(4)
_USED = const(8)
# entry, 28 bytes: uid(7) flags(1) counter(u32) balance(i32) seq(u32, the newest record) pseq ptime
_SIZE = const(28)
_ZERO_UID = const(b"\x00\x00\x00\x00\x00\x00\x00")
_KIND_CHARGE = const(1)  # = card_schema.taprecord.KIND_CHARGE
_KIND_REFUSED = const(2)  # = card_schema.taprecord.KIND_REFUSED
_KIND_DENIED = const(3)  # = card_schema.taprecord.KIND_DENIED
_KIND_VOID = const(4)  # = card_schema.taprecord.KIND_VOID
_KIND_REFUND = const(6)  # = card_schema.taprecord.KIND_REFUND
_KIND_CONFIRM = const(7)  # = card_schema.taprecord_host.KIND_CONFIRM
_RESULT_OK = const(0)  # = card_schema.taprecord.RESULT_OK
_RESULT_DENYLIST = const(2)  # = card_schema.taprecord_host.RESULT_DENYLIST
_RESULT_ROLLBACK = const(11)  # = card_schema.taprecord_host.RESULT_ROLLBACK


_READ = const(0)  # _io operations
_PROGRAM = const(1)
_ERASE = const(2)


class JournalError(Exception):
    """The flash failed (I/O error, read-back mismatch) or the region is unusable."""


class JournalFull(JournalError):
    """No sector can be reclaimed without losing unsynced taps: sync first."""


class Journal:
    def __init__(self, flash, key, terminal_id, high_water=0.8):
        self.flash = flash
        self.key = bytes(key)
        self.terminal_id = terminal_id
        n = flash.size // _SECTOR
        if flash.SECTOR != _SECTOR or flash.PAGE != 256 or n < 2:
            raise JournalError("flash geometry")  # 2+ sectors of 4096 bytes, 256-byte pages
        self.n = n
        self.capacity = n * _SLOTS  # taps the ring holds when nothing is acknowledged
        if not 0 < high_water <= 1:
            raise ValueError("high_water")
        self._hw_room = self.capacity - int(self.capacity * high_water)  # room below it: warn
        self._buf = bytearray(_SLOT)  # the record being written (reused)
        self._rb = bytearray(_SLOT)  # read-back / scan buffer (reused)
        self._hb = bytearray(_HDR_SIZE)
        self._base = base = [_NO_BASE] * n  # base_seq of each sector in the chain
        self.dead_slots = 0  # torn slots found at boot
        # ---- boot recovery: find the head, the MAC chain and the acked seq (bound: module doc)
        seqs = [0] * n
        newest = 0
        hdr = None
        for s in range(n):
            h = self._header(s)
            if h is not None:
                seqs[s] = h[0]
                base[s] = h[1]
                if hdr is None or h[0] > hdr[0]:
                    newest = s
                    hdr = h
        if hdr is None:
            # no valid header anywhere: nothing to recover, start the journal in sector 0
            self._sseq = 0
            self.head_seq = 0
            self.acked_seq = 0
            self._mac = taprecord.GENESIS_MAC
            self._cur = n - 1  # _open() moves on to the next sector: 0
            self._slot = _SLOTS
            self._open()
            return
        # the chain: consecutive sector_seq going back from the newest, in ring order
        s = newest
        for _ in range(n - 1):
            p = (s - 1) % n
            if base[p] == _NO_BASE or seqs[p] != seqs[s] - 1 or base[p] > base[s]:
                break
            s = p
        oldest_base = base[s]
        p = (newest + 1) % n
        while p != s:  # a sector outside the chain holds nothing current: it is free
            base[p] = _NO_BASE
            p = (p + 1) % n
        self._cur = newest
        self._sseq, head, acked, mac = hdr
        head -= 1
        # ack entries (page 0), used in order
        ab = self._io(_READ, newest * _SECTOR + _ACK_AT, bytearray(_ACK_N * _ACK_SIZE))
        # Every entry and every slot is read, not only up to the first erased one: a program that
        # failed with an I/O error (not a power cut) can leave an erased hole before used ones.
        used = 0
        for i in range(_ACK_N):
            a, b = struct.unpack_from("<II", ab, i * _ACK_SIZE)
            if a & b != _M32:  # not erased: used (a torn or killed entry has a ^ b != ~0)
                used = i + 1
                if a ^ b == _M32:
                    acked = max(acked, a)
        self._ack_n = used
        # slots of the newest sector: the used ones end at the last one that is not erased
        slot = dead = 0
        rb = self._rb
        for i in range(_SLOTS):
            addr = newest * _SECTOR + _SLOT0 + i * _SLOT
            self._io(_READ, addr, rb)
            if min(rb) == 0xFF:
                continue  # erased
            slot = i + 1
            a, b = struct.unpack_from("<II", rb, 4)  # a tap's seq; an ack slot's seq, ~seq
            if rb[0] == taprecord.VERSION and taprecord.crc_ok(rb):
                head = a
                mac = bytes(rb[taprecord.BODY : taprecord.BODY + 8])
            elif (
                rb[0] == _ACK_SLOT
                and a ^ b == _M32
                and struct.unpack_from("<I", rb, 60)[0] == _crc(rb, 60)
            ):
                acked = max(acked, a)
            elif max(rb):
                # torn: zero it so it reads the same forever (half-programmed cells can drift)
                dead += 1
                try:
                    self._io(_PROGRAM, addr, bytes(_SLOT))
                except JournalError:
                    pass
        self._slot = slot
        self.dead_slots = dead
        self.head_seq = head
        self._mac = mac
        # taps before the oldest sector were acked (reclaimed)
        self.acked_seq = self.acked_durable = min(max(acked, oldest_base - 1), head)

    def _io(self, op, addr, data=None):
        """Read into / program `data` at addr, or erase the sector at addr; returns `data`.
        An OSError of the flash becomes JournalError."""
        f = self.flash
        try:
            if op == _READ:
                f.read(addr, data)
            elif op == _PROGRAM:
                f.program(addr, data)
            else:
                f.erase(addr)
        except OSError as e:
            raise JournalError("flash I/O at 0x%x: %s" % (addr, e))
        return data

    # ---- sectors -------------------------------------------------------------------------------
    def _header(self, s):
        """(sector_seq, base_seq, acked, prev_mac) of sector s, or None when it has no valid header."""
        h = self._io(_READ, s * _SECTOR, self._hb)
        magic, sseq, base, acked, prev, _r, crc = struct.unpack_from("<IIII8sII", h, 0)
        if magic != _MAGIC or crc != _crc(h, _HDR_CRC_AT) or base == _NO_BASE:
            return None
        return sseq, base, acked, prev

    def _open(self):
        """Erase the next sector and program its header; it becomes the open sector."""
        if self.full:
            raise JournalFull("journal full: %d unsynced taps" % self.unsynced)
        s = (self._cur + 1) % self.n
        a = s * _SECTOR
        self._io(_ERASE, a)
        h = self._hb
        base = self.head_seq + 1
        struct.pack_into(
            "<IIII8sII", h, 0, _MAGIC, self._sseq + 1, base, self.acked_seq, self._mac, _M32, 0
        )
        struct.pack_into("<I", h, _HDR_CRC_AT, _crc(h, _HDR_CRC_AT))
        self._io(_PROGRAM, a, h)
        if self._header(s) is None:
            raise JournalError("read-back mismatch at 0x%x" % a)
        self._base[s] = base  # an erased (reclaimed) sector's old taps are gone
        self.acked_durable = self.acked_seq
        self._cur = s
        self._sseq += 1
        self._slot = 0
        self._ack_n = 0

    # ---- writing -------------------------------------------------------------------------------
    def append_tap(self, **fields):
        """Journal one tap; returns its seq once it is durable (programmed and read back)."""
        if self._slot >= _SLOTS:
            self._open()
        seq = self.head_seq + 1
        buf = self._buf
        mac = taprecord.pack_into(
            buf, self._mac, self.key, seq=seq, terminal=self.terminal_id, **fields
        )
        self._write_slot(buf)
        self.head_seq = seq
        self._mac = mac
        return seq

    def append(self, time, *fields):
        """append_tap with positional fields, in card_schema.taprecord.pack_into's order after
        `terminal`: uid, kind, result, profile, zone, counter, amount, balance, line, stop, duration,
        tariff_ver, deny_ver, flags. The tap path uses it: no keyword dict per record (two of ~640 bytes
        each on the VM, at the worst moment of a Wi-Fi board's heap)."""
        if self._slot >= _SLOTS:
            self._open()
        seq = self.head_seq + 1
        buf = self._buf
        mac = taprecord.pack_into(buf, self._mac, self.key, seq, time, self.terminal_id, *fields)
        self._write_slot(buf)
        self.head_seq = seq
        self._mac = mac
        return seq

    def _write_slot(self, buf):
        addr = self._cur * _SECTOR + _SLOT0 + self._slot * _SLOT
        # the slot counts as used from here on: a failed program may have cleared bits
        self._slot += 1
        try:
            self._io(_PROGRAM, addr, buf)
            if self._io(_READ, addr, self._rb) != buf:
                raise JournalError("read-back mismatch at 0x%x" % addr)
        except JournalError:
            try:
                self._io(_PROGRAM, addr, bytes(_SLOT))  # kill it: never a record
            except JournalError:
                pass
            raise

    def ack(self, upto_seq):
        """Persist that the host has every tap up to `upto_seq`; returns the new acked_seq."""
        if upto_seq > self.head_seq:
            raise ValueError("ack %d beyond head %d" % (upto_seq, self.head_seq))
        if upto_seq <= self.acked_seq:
            return self.acked_seq
        if self._ack_n < _ACK_N:
            addr = self._cur * _SECTOR + _ACK_AT + self._ack_n * _ACK_SIZE
            self._ack_n += 1
            self._io(_PROGRAM, addr, struct.pack("<II", upto_seq, upto_seq ^ _M32))
        elif self._slot < _SLOTS:
            buf = self._buf
            for i in range(_SLOT):
                buf[i] = 0
            buf[0] = _ACK_SLOT
            struct.pack_into("<II", buf, 4, upto_seq, upto_seq ^ _M32)
            struct.pack_into("<I", buf, 60, _crc(buf, 60))
            self._write_slot(buf)
        else:
            # No room left in the open sector: the next header carries the ack. When the ack frees
            # no sector (the ring is full) it stays in RAM until one does: losing it in a power cut
            # only makes the host receive records again, which it stores idempotently.
            self.acked_seq = upto_seq
            if not self.full:
                self._open()  # raises JournalError on a flash fault: the ack stays in RAM
            return upto_seq
        self.acked_seq = self.acked_durable = upto_seq
        return upto_seq

    # ---- reading -------------------------------------------------------------------------------
    def _oldest(self):
        """The oldest sector of the chain (the open one when the chain is only that)."""
        n = self.n
        s = self._cur
        for _ in range(n - 1):
            p = (s - 1) % n
            if self._base[p] == _NO_BASE:
                break
            s = p
        return s

    @property
    def tail_seq(self):
        """Oldest seq still on flash (head_seq + 1 when empty)."""
        return min(self._base[self._oldest()], self.head_seq + 1)

    def records(self, from_seq, max_n):
        """Up to max_n complete taps with seq >= from_seq, oldest first, as 64-byte bytes."""
        buf = bytearray(_SLOT * max(0, max_n))
        n = self.read(from_seq, buf)
        return [bytes(buf[i * _SLOT : (i + 1) * _SLOT]) for i in range(n)]

    def read(self, from_seq, buf):
        """Copy consecutive taps into `buf` (a bytearray or memoryview of k x 64 bytes), from the first
        one with seq >= from_seq: as many as fit, oldest first; returns how many. The uploaders stream a batch of any
        length through one small buffer this way. A slot i of a sector holds a seq <= its base + i
        (dead slots and ack slots only make it lag), so the scan starts there, not at slot 0."""
        mv = memoryview(buf)
        cap = len(mv) // _SLOT
        if cap <= 0 or from_seq > self.head_seq:
            return 0
        n = self.n
        s = self._oldest()
        count = 0
        want = from_seq
        for _ in range(n):
            cur = s == self._cur
            if cur or self._base[(s + 1) % n] > want:
                for i in range(max(0, want - self._base[s]), self._slot if cur else _SLOTS):
                    rb = mv[count * _SLOT : (count + 1) * _SLOT]
                    self._io(_READ, s * _SECTOR + _SLOT0 + i * _SLOT, rb)
                    if rb[0] == taprecord.VERSION and taprecord.crc_ok(rb):
                        q = taprecord.seq_of(rb)
                        if q == want or (q > want and not count):  # the first may be later
                            count += 1
                            want = q + 1
                            if count >= cap:
                                return count
                        elif q > want:
                            return count  # not consecutive: never on a sound journal
            if cur:
                break
            s = (s + 1) % n
        return count

    def scan(self, from_seq):
        """Yield every complete tap with seq >= from_seq still on flash, oldest first, in one reused
        64-byte buffer (valid until the next step; records() makes a list): the boot replay of
        the card memory (Cards), which must not need a big block of a fragmented heap."""
        n = self.n
        s = self._oldest()
        rb = self._rb
        for _ in range(n):
            cur = s == self._cur
            if cur or self._base[(s + 1) % n] > from_seq:
                for i in range(self._slot if cur else _SLOTS):
                    self._io(_READ, s * _SECTOR + _SLOT0 + i * _SLOT, rb)
                    if (
                        rb[0] == taprecord.VERSION
                        and taprecord.crc_ok(rb)
                        and taprecord.seq_of(rb) >= from_seq
                    ):
                        yield rb
            if cur:
                break
            s = (s + 1) % n

    # ---- state ---------------------------------------------------------------------------------
    @property
    def unsynced(self):
        return self.head_seq - self.acked_seq

    @property
    def room(self):
        """Slots left before the journal is full: free ones in the open sector, plus 60 for each
        sector after it that is free or holds only acknowledged taps. O(sectors), no flash read."""
        n = self.n
        base = self._base
        r = _SLOTS - self._slot
        q = (self._cur + 1) % n
        while q != self._cur:
            if base[q] != _NO_BASE and base[(q + 1) % n] - 1 > self.acked_seq:
                break  # q still holds unacknowledged taps: the writer stops before it
            r += _SLOTS
            q = (q + 1) % n
        return r

    @property
    def fill(self):
        """How full the journal is, in percent (100: full, new taps are refused)."""
        return (self.capacity - self.room) * 100 // self.capacity

    @property
    def high_water(self):
        """True above the high-water mark: time to sync, before taps are refused."""
        return self.room < self._hw_room

    @property
    def full(self):
        """True when the next append would raise JournalFull: the open sector is full and the next
        one (the oldest of the chain, when in use) still holds unacked taps."""
        n = self.n
        q = (self._cur + 1) % n
        return (
            self._slot >= _SLOTS
            and self._base[q] != _NO_BASE
            and self._base[(q + 1) % n] - 1 > self.acked_seq  # the last tap in q
        )


class Cards:
    """What the terminal remembers of the cards it saw recently (module doc, "Cards")."""

    def __init__(self, n=32):
        self.n = n
        self._t = bytearray(n * _SIZE)  # flags 0: a free entry

    def find(self, uid):
        t = self._t
        last = uid[6]  # compared first: the slice (an allocation) only for a likely match
        for i in range(self.n):
            o = i * _SIZE
            if t[o + 6] == last and t[o : o + 7] == uid:
                return i
        return -1

    def get(self, i):
        """(uid, flags, counter, balance, seq, pseq, ptime) of entry i."""
        t = self._t
        o = i * _SIZE
        u = struct.unpack_from  # formats the firmware has already: a new one would be a qstr
        return (
            bytes(t[o : o + 7]),
            t[o + 7],
            u("<I", t, o + 8)[0],
            u("<i", t, o + 12)[0],
            u("<I", t, o + 16)[0],
            u("<I", t, o + 20)[0],
            u("<I", t, o + 24)[0],
        )

    def set(self, i, uid, flags, counter, balance, seq, pseq, ptime):
        t = self._t
        o = i * _SIZE
        t[o : o + 7] = uid
        t[o + 7] = flags | _USED
        struct.pack_into("<II", t, o + 8, counter, balance & 0xFFFFFFFF)
        struct.pack_into("<II", t, o + 16, seq, pseq)
        struct.pack_into("<I", t, o + 24, ptime)

    def update(self, seq, kind, result, uid, counter, amount, balance, time):
        """Learn from one journal record (written now, or read at boot); kind 0: the card's state as
        just read from it, nothing journalled (seq: the journal's head, for the age)."""
        if uid == _ZERO_UID or result == _RESULT_ROLLBACK:
            return  # no card; or a card gone back, whose state is not what this terminal saw
        i = self.find(uid)
        e = self.get(i) if i >= 0 else None
        pend = e is not None and e[1] & _PENDING
        p = t = 0
        if kind == _KIND_CHARGE or kind == _KIND_REFUND:
            if result:
                return
            # journalled before its commit
            flags, p, t = _PENDING | _UNCERTAIN | _BALANCE, seq, time
        elif kind == _KIND_CONFIRM or kind == _KIND_VOID:
            if e is None or not pend or e[5] != amount:
                return  # not the pending charge this terminal remembers
            if kind == _KIND_CONFIRM:
                flags, counter, balance = e[1] & _BALANCE, e[2], e[3]
            else:  # the card never committed it: one counter back, balance not known
                flags, counter, balance = 0, e[2] - 1, -1
        elif pend or kind > _KIND_DENIED:
            return  # (a pending charge is resolved first, from the card itself)
        elif balance < 0:
            flags = 0
        elif kind == _KIND_DENIED and result == _RESULT_DENYLIST:
            flags = _UNCERTAIN | _BALANCE  # a block mark, journalled before its commit
        else:
            flags = _BALANCE
        if i < 0:  # a new card: a free entry, else the oldest without a pending charge
            best = bp = bs = 0
            tb = self._t
            for j in range(self.n):
                o = j * _SIZE
                f = tb[o + 7]
                if not f:
                    best = j
                    break
                fp = f & _PENDING  # pending entries go last; then the oldest newest record
                s = struct.unpack_from("<I", tb, o + 16)[0]
                if j == 0 or fp < bp or fp == bp and s < bs:
                    best = j
                    bp = fp
                    bs = s
            i = best
        self.set(i, uid, flags, counter, balance, seq, p, t)

    def check(self, i, counter, balance):
        """False when the card (its newest trip's counter and balance) is behind what entry i saw:
        a lower counter, or the same counter with another balance."""
        e = self.get(i)
        low = e[2] - 1 if e[1] & _UNCERTAIN else e[2]
        if counter < low:
            return False
        return not (
            counter == e[2] and e[1] & (_BALANCE | _UNCERTAIN) == _BALANCE and balance != e[3]
        )


def _crc(b, n):
    return binascii.crc32(memoryview(b)[0:n]) & _M32
