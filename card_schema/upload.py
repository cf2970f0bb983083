"""Wi-Fi upload: the batch a terminal POSTs to `tapkit serve`, and the server's answer (both ends).

    POST /v1/batch   body: batch head | count x 64-byte journal records, AES-128-CBC encrypted
    200              body: answer head (MAC'd) | one chunk of a signed config blob, AES-128-CBC encrypted

Batch head (`BATCH_FMT`, little endian, BATCH_HEAD bytes), in clear (the server needs the terminal id
to find its keys; nothing in it is rider data):

    off  size  field
      0     4  magic           "TKB2"
      4     4  terminal        terminal id
      8     4  fares_ver       versions of the terminal's installed config (card_schema.signed.NAMES)
     12     4  deny_ver
     16     4  deny_delta_ver
     20     2  count           records that follow; bit 15 (ANCHOR): the first one is the anchor
     22     1  part_kind       the config blob the terminal is receiving in chunks (0: none)
     23     4  part_ver        its version
     27     4  part_off        bytes of it the terminal holds (its staging file, firmware/install.py)
     31    16  iv              nonce(8) | tag(8): the records' CBC IV and the request's nonce;
                               tag = cmac(journal key, head bytes 0..30 | nonce)[:8]

The tag authenticates the request (REQUEST_TAGGED): the server answers only a request made with the
terminal's own journal key (keystore.terminal_key), so a stranger learns nothing from it, not even
whether the id it sent is one of the operator's (ingest.py: one refusal for both).

The records are encrypted with the terminal's wire key (keystore.wire_key, keys.json "wire") in CBC
from `iv`: 64-byte records need no padding. Encryption gives confidentiality only; the records carry
their own MAC chain (card_schema/taprecord.py), which the server checks after decrypting, so a changed
byte, a changed IV or a wrong key is a refused batch.

Answer head (`ANSWER_FMT`, ANSWER_HEAD bytes), then `ceil16(n)` bytes of chunk:

    off  size  field
      0     4  magic           "TKA2"
      4     4  acked           last seq of the batch now durable in the store (0: nothing stored)
      8     4  server_time     unix seconds
     12     1  kind            config blob the chunk belongs to (0: the terminal lacks nothing)
     13     4  version         its version
     17     4  total           its length (card_schema.signed blob, signature included)
     21     4  offset          where the chunk goes in it
     25     4  n               chunk bytes (the last chunk of a blob is padded with zeros to 16)
     29    16  iv              the chunk's CBC IV (wire key)
     45     8  mac             cmac(journal key, request iv | answer bytes 0..44)[:8]

The MAC binds the answer to the request it answers (the request's fresh iv) with the terminal's own
journal key (keystore.terminal_key), so a rogue server or a replayed answer cannot make a terminal
reclaim records nobody stored, nor set its clock. The chunk is not in the MAC: the blob it belongs to
is signed as a whole and verified before use (firmware/install.py), so a forged chunk only costs a
restart of that download. One chunk per answer: a terminal that lacks a config (a deny list of 100,000
cards is 800 KB) fetches it over as many exchanges as it takes, resuming from `part_off`.

The anchor is the terminal's last acknowledged record, sent only so the server can check the MAC chain
into the batch when that record is not in its store (host_tools/backoffice/ingest.py has the rules).

The terminal (firmware/wifi.py) packs the head into its request, streams the records from flash through
one small buffer and parses the answer in place, with these values copied as private consts (a Wi-Fi
board's heap is the tightest: tests/firmware/test_const_owners.py holds the copies to this module).
Building and parsing whole bodies (serve, bench, tests) is card_schema.upload_host.
"""

from card_schema.compat import const

BATCH_MAGIC = b"TKB2"
BATCH_FMT = "<4sIIIIHBII16s"
BATCH_HEAD = const(47)
ANCHOR = const(0x8000)  # count flag: the first record is the anchor
ANSWER_MAGIC = b"TKA2"
ANSWER_FMT = "<4sIIBIIII16s8s"
ANSWER_HEAD = const(53)
ANSWER_MACED = const(45)  # answer bytes the MAC covers (after the request's iv)
REQUEST_TAGGED = const(31)  # batch head bytes the request tag covers (then the 8-byte nonce)
