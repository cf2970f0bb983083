"""Tearing: the field drops before, after or inside a command; nothing uncommitted survives, everything
committed does, and the next tap sees a consistent card. The seeded campaign names seed and step on
failure (replay: python -m host_tools.bench_card --seed S --drops N)."""

import os

import pytest

from card_schema.desfire_admin import DESFireAdmin
from emulator.card import COMMIT_POINT, DESFireCard, FieldLost
from host_tools.bench_card import tearing_campaign

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


def test_a_drop_loses_the_uncommitted_debit(tmp_path):
    # the campaign's model in one case: debit staged, field gone before the commit: no change
    tally = tearing_campaign(seed=11, drops=40)
    assert tally["drops"] == 40 and tally["taps"] == 40
    assert tally["committed"] + tally["not_committed"] == 40


def test_tearing_campaign_seeded():
    seed = int(os.environ.get("TAPKIT_TEAR_SEED", "20261122"))
    tally = tearing_campaign(seed=seed, drops=300)
    assert tally["drops"] == 300
    assert tally["committed"] > 0 and tally["not_committed"] > 0  # both outcomes were exercised
    assert min(tally["before"], tally["after"], tally["inside"]) > 50
