"""Desk readers for card-office tools, chosen by a reader spec.

pcsc[:NAME]            a PC/SC reader through pcscd (ACR122U, ..., or the emulator through vpcd)
emulator:CARDFILE      an emulated card in-process (scripts and tests)
nfc:usb | nfc:udp[:HOST:PORT]   nfcpy (a USB reader nfcpy supports, or nfcpy's UDP air)

with open_reader("pcsc") as r:
    df = DESFireAdmin(r.transceive)       # ISO-wrapped DESFire APDUs
    uid = r.uid

survey()   # every PC/SC and nfcpy USB reader this machine has, and whether a card is on it
"""

from host_tools import TapkitError


class ReaderError(TapkitError):
    pass


class CardRemoved(ReaderError):
    """The card stopped answering in the middle of an operation (taken away, field lost).

    host_tools.cardoffice.cardops turns it into a line that says what state the card was left in."""


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
            raise CardRemoved("card removed or not answering on %s (%s)" % (self.name, e))
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
        from emulator.card import FieldLost

        try:
            return self.card.transceive(bytes(apdu))
        except FieldLost as e:
            raise CardRemoved("card removed from %s (%s)" % (self.name, e))

    def close(self):
        self.card.field_off()


class NFCReader(_Reader):
    """An nfcpy reader: `usb[:...]` (a USB reader nfcpy supports) or `udp[:HOST:PORT]` (nfcpy's
    simulated air, where `tapkit emulate card CARDFILE --udp PORT` serves a card).

    Polls for a Type A card, activates it as ISO-DEP (RATS; nfcpy's Type 4 tag) and then sends the same
    ISO 7816-4 wrapped DESFire APDUs as a PC/SC reader does."""

    def __init__(self, arg=""):
        try:
            import nfc
            import nfc.clf
            import nfc.tag
            import nfc.tag.tt4
        except ImportError:
            raise ReaderError("nfcpy is not installed: pip install nfcpy")
        kind, _, rest = (arg or "usb").partition(":")
        if kind not in ("usb", "udp"):
            raise ReaderError("unknown nfc reader %r: use nfc:usb or nfc:udp[:HOST:PORT]" % arg)
        if kind == "udp":
            host, _, port = rest.partition(":")
            path = "udp:%s:%s" % (host or "localhost", port or 54321)
        else:
            path = "usb" + (":" + rest if rest else "")
        self.name = "nfc:" + path
        # nfcpy waits the card's frame waiting time (from its ATS, ms) for each answer; on the
        # simulated air the card is a process on a loaded host: a late answer there is not a lost
        # card (after a timeout nfcpy's R(NAK) meets the late answer: "unrecoverable protocol error")
        self._timeout = 2.0 if kind == "udp" else None
        self._errors = (nfc.tag.tt4.Type4TagCommandError, nfc.clf.CommunicationError)
        clf = nfc.ContactlessFrontend()
        try:
            opened = clf.open(path)
        except (OSError, ValueError) as e:
            raise ReaderError("cannot open nfc reader %s: %s" % (path, e))
        if not opened:
            raise ReaderError(
                "no nfc reader at %s: plug in an nfcpy-supported reader (see "
                "`python -m nfc`), or serve a card with `tapkit emulate card CARDFILE --udp PORT`"
                % path
            )
        self.clf = clf
        try:
            target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=3, interval=0.1)
        except nfc.clf.CommunicationError:
            target = None
        if target is None:
            self.close()
            raise ReaderError("no card on reader %s: put a card on the reader" % self.name)
        tag = nfc.tag.activate(clf, target)
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            self.close()
            raise ReaderError(
                "the card on %s is not an ISO 14443-4 card (%s): not a DESFire card"
                % (self.name, tag)
            )
        self.tag = tag
        self.uid = bytes(target.sdd_res)

    def transceive(self, apdu):
        try:
            resp = self.tag.transceive(bytearray(apdu), self._timeout)
        except self._errors as e:
            raise CardRemoved("card removed or not answering on %s (%s)" % (self.name, e))
        return bytes(resp)

    def close(self):
        clf, self.clf = getattr(self, "clf", None), None
        if clf is not None:
            try:
                clf.close()
            except Exception:
                pass


READERS = {"pcsc": PCSCReader, "emulator": EmulatorReader, "nfc": NFCReader}


def _pcsc_readers():
    try:
        from smartcard.Exceptions import CardConnectionException, NoCardException
        from smartcard.pcsc.PCSCExceptions import EstablishContextException
        from smartcard.System import readers
    except ImportError:
        return [{"kind": "pcsc", "error": "pyscard is not installed: pip install pyscard"}]
    try:
        found = readers()
    except EstablishContextException:
        return [{"kind": "pcsc", "error": "pcscd is not running (sudo systemctl start pcscd)"}]
    except Exception as e:
        return [{"kind": "pcsc", "error": "cannot list PC/SC readers: %s" % e}]
    rows = []
    for r in found:
        row = {"kind": "pcsc", "reader": "pcsc:%s" % r, "name": str(r), "card": None}
        conn = r.createConnection()
        try:
            conn.connect()
            row["card"] = "ATR " + bytes(conn.getATR()).hex(" ").upper()
        except (NoCardException, CardConnectionException):
            pass
        finally:
            try:
                conn.disconnect()
            except Exception:
                pass
        rows.append(row)
    return rows


def _nfc_usb_readers():
    try:
        import nfc.clf.device
        import nfc.clf.transport
    except ImportError:
        return [{"kind": "nfc", "error": "nfcpy is not installed: pip install nfcpy"}]
    try:
        found = nfc.clf.transport.USB.find("usb") or []
    except Exception as e:  # libusb missing or not permitted
        return [{"kind": "nfc", "error": "cannot list USB devices for nfcpy: %s" % e}]
    rows = []
    for vid, pid, bus, dev in found:
        driver = nfc.clf.device.usb_device_map.get((vid, pid))
        if driver:
            rows.append(
                {
                    "kind": "nfc",
                    "reader": "nfc:usb:%03d:%03d" % (bus, dev),
                    "name": "%s chip (USB %04X:%04X)" % (driver.upper(), vid, pid),
                    "card": None,  # nfcpy must claim the reader to sense: `tapkit card show`
                }
            )
    return rows


def survey():
    """Every desk reader this machine has: PC/SC readers (through pcscd; with the card's ATR when one
    is on it) and USB readers nfcpy drives. A backend that cannot be asked gives one row with
    "error" (pcscd not running, libusb missing) instead of raising."""
    return _pcsc_readers() + _nfc_usb_readers()


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
