"""Desk readers for card-office tools, chosen by a reader spec.

pcsc[:NAME]            a PC/SC reader through pcscd (ACR122U, ..., or the emulator through vpcd)
emulator:CARDFILE      an emulated card in-process (scripts and tests)
nfc:usb | nfc:udp[:HOST:PORT]   nfcpy (not in this release yet)

with open_reader("pcsc") as r:
    df = DESFireAdmin(r.transceive)       # ISO-wrapped DESFire APDUs
    uid = r.uid
"""

from host_tools import TapkitError


class ReaderError(TapkitError):
    pass


class _Reader:
    name = "?"
    uid = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass


class PCSCReader(_Reader):
    def __init__(self, arg=""):
        try:
            from smartcard.System import readers
            from smartcard.Exceptions import CardConnectionException, NoCardException
            from smartcard.pcsc.PCSCExceptions import EstablishContextException
        except ImportError:
            raise ReaderError("pyscard is not installed: pip install pyscard")
        try:
            found = readers()
        except EstablishContextException:
            raise ReaderError(
                "pcscd is not running: start it with `sudo pcscd` (or systemctl start pcscd)"
            )
        except Exception as e:
            raise ReaderError("cannot list PC/SC readers: %s" % e)
        if arg:
            found = [r for r in found if arg.lower() in str(r).lower()]
        if not found:
            raise ReaderError(
                "no PC/SC reader%s found: plug one in, or serve an emulated card with "
                "`tapkit emulate card CARDFILE`" % (" matching %r" % arg if arg else "")
            )
        self.name = str(found[0])
        self.conn = found[0].createConnection()
        try:
            self.conn.connect()
        except (NoCardException, CardConnectionException):
            raise ReaderError("no card on reader %s: put a card on the reader" % self.name)
        self._exc = CardConnectionException
        # The reader's pseudo-APDU for the UID (PC/SC part 3: GET DATA FF CA 00 00 00).
        data = self.transceive(bytes.fromhex("FFCA000000"))
        if len(data) < 2 or data[-2:] != b"\x90\x00":
            raise ReaderError("reader %s did not report the card UID" % self.name)
        self.uid = bytes(data[:-2])

    def transceive(self, apdu):
        try:
            data, sw1, sw2 = self.conn.transmit(list(apdu))
        except self._exc as e:
            raise ReaderError("card removed or not answering on %s (%s)" % (self.name, e))
        return bytes(data) + bytes((sw1, sw2))

    def close(self):
        try:
            self.conn.disconnect()
        except Exception:
            pass


class EmulatorReader(_Reader):
    def __init__(self, arg=""):
        from emulator.card import DESFireCard

        if not arg:
            raise ReaderError("emulator reader needs a card file: --reader emulator:CARDFILE")
        try:
            self.card = DESFireCard.load(arg)
        except FileNotFoundError:
            raise ReaderError(
                "no card file %s (create one with `tapkit emulate card %s --new`)" % (arg, arg)
            )
        self.name = "emulator:" + arg
        self.uid = bytes(self.card.uid)

    def transceive(self, apdu):
        return self.card.transceive(bytes(apdu))

    def close(self):
        self.card.field_off()


class NFCReader(_Reader):
    def __init__(self, arg=""):
        raise ReaderError(
            "nfc readers (nfcpy) are not supported yet; use --reader pcsc or "
            "--reader emulator:CARDFILE"
        )


READERS = {"pcsc": PCSCReader, "emulator": EmulatorReader, "nfc": NFCReader}


def open_reader(spec):
    kind, _, arg = (spec or "pcsc").partition(":")
    try:
        cls = READERS[kind]
    except KeyError:
        raise ReaderError(
            "unknown reader %r: use pcsc[:NAME], nfc:usb, nfc:udp[:HOST:PORT] or "
            "emulator:CARDFILE" % spec
        )
    return cls(arg)
