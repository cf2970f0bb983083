"""Tearing: the field drops before, after or inside a command; nothing uncommitted survives, everything
committed does, and the next tap sees a consistent card. The campaign runs the firmware's own tap on a
virtual board (harness/tearing.py) and names seed and step on failure (replay: python -m bench tearing
--seed S --drops N)."""

import os

import pytest

from card_schema.desfire_admin import DESFireAdmin
from emulator.card import COMMIT_POINT, DESFireCard, FieldLost
from harness.tearing import tearing_campaign

AID = 0x112233


def _torn_create(tmp_path, how):
    path = str(tmp_path / "c.card")
    card = DESFireCard.blank(path=path)
    card.save()
    card.tear = lambda c, f: how if f[1] == 0xCA else None
    df = DESFireAdmin(card.transceive)
    with pytest.raises(FieldLost):
        df.create_application(AID, 0x0B, 2)
    card.tear = None
    return card, DESFireCard.load(path)


@pytest.mark.parametrize(
    "how,created",
    [
        ("before", False),
        ("after", True),
        (COMMIT_POINT - 0.01, False),
        (COMMIT_POINT, True),
        (0.99, True),
        (0.0, False),
    ],
)
def test_a_torn_command_is_all_or_nothing_in_memory_and_on_file(tmp_path, how, created):
    card, on_file = _torn_create(tmp_path, how)
    assert (AID in card.apps) is created
    assert (AID in on_file.apps) is created
    assert card.session_key is None and card.selected == 0  # power lost: PICC level, no session


COMMIT = 8  # the tap's 9th frame: CommitTransaction


def test_a_torn_commit_charges_once_when_the_rider_taps_again():
    # the firmware's tap, torn at its commit: debit staged and journalled, then the field goes
    tally = tearing_campaign(
        seed=11,
        plan=[
            (COMMIT, "before", 0.0),  # the card never got the commit: nothing changed
            (
                COMMIT,
                "after",
                0.0,
            ),  # committed, the answer lost: the terminal must not charge again
            (COMMIT, "inside", 0.69),  # power gone just before the card's EEPROM update
            (COMMIT, "inside", 0.7),  # ... just after it
            (6, "after", 0.0),  # the Debit ran, nothing committed
        ],
    )
    assert tally["drops"] == 5 and tally["taps"] == 5
    assert (tally["committed"], tally["not_committed"]) == (2, 3)
    # the two charges journalled before commits that never happened were voided by the next tap;
    # after the two that did commit, the next tap read the card's trip log and charged nothing
    assert tally["voided"] == 2
    # 4 torn commits journalled, 2 voids, 3 fresh charges, and the CONFIRMs: 2 from the trip log
    # (the commits that happened, resolved when the card came back), 3 from the commit answers
    assert tally["synced"] == 4 + 2 + 3 + 2 + 3


def test_tearing_campaign_seeded():
    seed = int(os.environ.get("TAPKIT_TEAR_SEED", "20261122"))
    tally = tearing_campaign(seed=seed, drops=150)
    assert tally["drops"] == 150 and tally["taps"] == 150
    assert tally["committed"] > 0 and tally["not_committed"] > 0  # both outcomes were exercised
    assert min(tally["before"], tally["after"], tally["inside"]) > 30
