"""Wi-Fi upload: the batch a terminal POSTs to `tapkit serve`, and the server's answer (both ends).

    POST /v1/batch HTTP/1.0   body: batch head | count x 64-byte journal records (card_schema.taprecord)
    200                       body: answer head | nblobs x (length u16 | signed blob, card_schema.signed)

Batch head (`BATCH_FMT`, little endian, BATCH_HEAD bytes):

    off  size  field
      0     4  magic           "TKB1"
      4     4  terminal        terminal id
      8     4  fares_ver       versions of the terminal's installed config (card_schema.signed.NAMES)
     12     4  deny_ver
     16     4  deny_delta_ver
     20     2  count           records that follow; bit 15 (ANCHOR): the first one is the anchor

Answer head (`ANSWER_FMT`, ANSWER_HEAD bytes), then `nblobs` x (length u16 | signed blob):

    off  size  field
      0     4  magic           "TKA1"
      4     4  acked           last seq of the batch now durable in the store (0: nothing stored)
      8     4  server_time     unix seconds
     12     1  nblobs          signed config blobs the terminal lacks (by the versions it sent)

The anchor is the terminal's last acknowledged record, sent only so the server can check the MAC chain
into the batch when that record is not in its store (host_tools/backoffice/ingest.py has the rules).

The terminal (firmware/wifi.py) packs the head into its preallocated request buffer and parses the
answer in place, with these values copied as private consts (a Wi-Fi board's heap is the tightest:
tests/firmware/test_const_owners.py holds the copies to this module). Building and parsing whole
bodies (serve, bench, tests) is card_schema.upload_host.
"""

from card_schema.compat import const

BATCH_MAGIC = b"TKB1"
BATCH_FMT = "<4sIIIIH"
BATCH_HEAD = const(22)
ANCHOR = const(0x8000)  # count flag: the first record is the anchor
ANSWER_MAGIC = b"TKA1"
ANSWER_FMT = "<4sIIB"
ANSWER_HEAD = const(13)

BLOB_LEN_FMT = "<H"  # before each blob of the answer
