"""A card as tapkit issued it before cards were secured (for the migration tests and the campaign):
card info free to read (no MAC: anyone relaying the answer could rewrite it), no inspection copy,
no issuer signature (file 0x05: terminals with require_issuer_sig refuse it), and the factory PICC
master key (all-zero 2K3DES, key settings 0x0F: anyone may FormatPICC).

    card = DESFireCard.load(path); make_legacy(card); card.save()
"""

from card_schema import citizen, citizen_host


def make_legacy(card):
    """Turn an issued emulated card (emulator.card.DESFireCard) into one issued the old way."""
    app = card.apps[citizen.AID]
    r, w, rw, car = citizen_host.LEGACY_INFO_RIGHTS
    app["files"][citizen.FILE_INFO]["access"] = r << 12 | w << 8 | rw << 4 | car
    app["files"].pop(citizen_host.FILE_INFO_COPY, None)
    app["files"].pop(citizen_host.FILE_SIG, None)
    card.picc_key = bytes(16)
    card.picc_key_aes = False
    card.picc_key_version = 0
    card.picc_key_settings = 0x0F
    return card


def make_legacy_file(path):
    from emulator.card import DESFireCard

    card = DESFireCard.load(str(path))
    make_legacy(card)
    card.save()
    return card
